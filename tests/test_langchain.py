"""LangChain against a real node (the embedded model): `ChatOpenAI.bind_tools`, an agent with one
tool running its loop (call, tool result, answer), and `OpenAIEmbeddings`."""
from __future__ import annotations

import json

import numpy as np
import pytest

langchain_openai = pytest.importorskip("langchain_openai")
pytest.importorskip("langchain.agents")

from langchain_core.messages import AIMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402

CALLED: list[str] = []


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    CALLED.append(city)
    return json.dumps({"city": city, "temperature_c": 18, "sky": "sunny"})


@pytest.fixture()
def chat(api_server):
    return langchain_openai.ChatOpenAI(base_url=api_server.url + "/v1", api_key="none",
                                       model="default", temperature=0, max_tokens=40,
                                       max_retries=0)


def test_bind_tools_gets_a_call_with_parsed_arguments(chat):
    bound = chat.bind_tools([get_weather], tool_choice="required")
    reply = bound.invoke("What is the weather in Paris?")
    assert isinstance(reply, AIMessage) and not reply.invalid_tool_calls
    [call] = reply.tool_calls
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    assert call["id"].startswith("call_")


def test_an_agent_with_one_tool_runs_its_loop(chat):
    from langchain.agents import create_agent
    from langchain.agents.middleware import wrap_model_call

    # The embedded 135M model does not choose a tool by itself under tool_choice "auto" (it
    # answers in text: README, tools): the agent asks for a call until a tool has answered,
    # then lets the model choose ("auto"), which is how one drives a model this small.
    @wrap_model_call
    def call_first(request, handler):
        answered = any(isinstance(m, ToolMessage) for m in request.messages)
        return handler(request if answered else request.override(tool_choice="required"))

    CALLED.clear()
    agent = create_agent(chat, tools=[get_weather], middleware=[call_first],
                         system_prompt="Use get_weather to answer questions about weather.")
    result = agent.invoke({"messages": [{"role": "user",
                                         "content": "What is the weather in Paris?"}]},
                          {"recursion_limit": 8})
    messages = result["messages"]
    assert CALLED, [m.content for m in messages]  # the model called the tool, which ran
    assert any(isinstance(m, ToolMessage) for m in messages)
    final = messages[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls and final.content


def test_openai_embeddings_get_vectors(api_server):
    embeddings = langchain_openai.OpenAIEmbeddings(
        base_url=api_server.url + "/v1", api_key="none", model="default",
        check_embedding_ctx_length=False, max_retries=0)
    documents = embeddings.embed_documents(["The cat sat on the mat.", "Stocks fell today."])
    query = embeddings.embed_query("The cat sat on the mat.")
    assert len(documents) == 2 and len(documents[0]) == len(query) == 576
    assert np.allclose(documents[0], query, atol=1e-5)
    assert float(np.linalg.norm(query)) == pytest.approx(1.0, abs=1e-5)
