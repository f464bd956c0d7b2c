"""setup.sh chooses an install that exists for the machine, or stops saying what to do.

No Mac here: `setup.sh --dry-run` is run with the answers a Mac gives (UNAME_S, UNAME_M, SW_VERS,
PROC_TRANSLATED) and a PATH of stand-in commands (pythons that print their version, Apple's
`xcode-select` and `xcrun` with or without the command line tools). A dry run installs nothing.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASH = shutil.which("bash") or ""
pytestmark = pytest.mark.skipif(not BASH, reason="bash is not installed")

ARM = {"UNAME_S": "Darwin", "UNAME_M": "arm64", "PROC_TRANSLATED": "0"}
INTEL = {"UNAME_S": "Darwin", "UNAME_M": "x86_64", "SW_VERS": "13.6.7", "PROC_TRANSLATED": "0"}
CLT = "/Library/Developer/CommandLineTools"


def command(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run(tmp_path: Path, env: dict[str, str], *args: str, pythons: dict[str, str] | None = None,
        tools: bool = True, compiler: bool = True) -> subprocess.CompletedProcess[str]:
    """`bash setup.sh --dry-run ARGS` in a fresh copy of the script, with only stand-in commands."""
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "repo").mkdir()
    shutil.copy(ROOT / "setup.sh", work / "repo" / "setup.sh")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("dirname") or "/usr/bin/dirname", bin_dir / "dirname")
    for name, version in (pythons if pythons is not None else {"python3": "3.9",
                                                               "python3.12": "3.12"}).items():
        command(bin_dir, name, f"echo {version}")
    if tools:
        command(bin_dir, "xcode-select", f"echo {CLT}")
        command(bin_dir, "xcrun", f"echo {CLT}/usr/bin/clang")
    else:  # what a Mac without the command line tools answers
        command(bin_dir, "xcode-select",
                "echo 'xcode-select: error: unable to get active developer directory' >&2; exit 2")
        command(bin_dir, "xcrun", "echo 'xcrun: error: invalid active developer path' >&2; exit 1")
    if compiler:
        command(bin_dir, "c++", "exit 0")
    return subprocess.run([BASH, str(work / "repo" / "setup.sh"), "--dry-run", *args],
                          env={"PATH": str(bin_dir), "HOME": str(work), **env},
                          capture_output=True, text=True, timeout=60, check=False)


def plan(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 0, done.stderr
    return dict(line.split(": ", 1) for line in done.stdout.splitlines())


def test_macos_14_on_apple_silicon_gets_torch_2_13_and_compiles_llama_cpp_with_metal(tmp_path):
    chosen = plan(run(tmp_path, {**ARM, "SW_VERS": "14.5"}))
    assert chosen["platform"] == "Darwin arm64 (macOS 14.5)"
    assert chosen["python"].endswith("/python3.12 (3.12)")  # not macOS's own python3 (3.9)
    assert chosen["torch"].startswith("torch==2.13.0 ")
    assert chosen["project"] == "pip install -e .[transformers,test]"
    assert chosen["llama.cpp"] == "compile llama-cpp-python (CMAKE_ARGS=-DGGML_NATIVE=OFF)"


def test_macos_13_on_apple_silicon_gets_the_last_torch_built_for_it(tmp_path):
    chosen = plan(run(tmp_path, {**ARM, "SW_VERS": "13.6.7"}))
    assert chosen["torch"].startswith("torch==2.11.0 (the last torch built for macOS 11 to 13")
    assert chosen["project"] == "pip install -e .[transformers,test]"


def test_an_intel_mac_installs_the_llama_cpp_engine_without_torch(tmp_path):
    chosen = plan(run(tmp_path, INTEL))
    assert chosen["torch"].startswith("none (PyTorch's last Intel Mac build, 2.2.2")
    assert chosen["project"] == "pip install -e .[test]"
    assert chosen["llama.cpp"] == "compile llama-cpp-python (CMAKE_ARGS=-DGGML_METAL=OFF)"


def test_an_intel_mac_without_llama_cpp_has_no_engine_and_says_so(tmp_path):
    done = run(tmp_path, INTEL, "--no-llamacpp")
    assert done.returncode == 1 and done.stdout == ""
    assert "llama.cpp only; drop --no-llamacpp" in done.stderr


@pytest.mark.parametrize("env", [{**ARM, "SW_VERS": "14.5"}, INTEL])
def test_no_command_line_tools_stops_before_installing_and_says_how(tmp_path, env):
    done = run(tmp_path, env, tools=False)
    assert done.returncode == 1 and done.stdout == ""
    assert "xcode-select --install" in done.stderr
    assert ("--no-llamacpp" in done.stderr) == (env["UNAME_M"] == "arm64")


def test_without_the_tools_the_transformers_engine_alone_still_installs(tmp_path):
    chosen = plan(run(tmp_path, {**ARM, "SW_VERS": "14.5"}, "--no-llamacpp", tools=False))
    assert chosen["llama.cpp"] == "skipped (--no-llamacpp)"
    assert chosen["torch"].startswith("torch==2.13.0")


def test_a_stock_mac_with_python_3_9_only_is_told_how_to_get_a_newer_one(tmp_path):
    done = run(tmp_path, {**ARM, "SW_VERS": "15.1"}, pythons={"python3": "3.9"})
    assert done.returncode == 1
    assert "3.11 or newer is needed" in done.stderr and "brew install python@3.12" in done.stderr
    assert "PYTHON=" in done.stderr


def test_the_newest_suitable_python_is_preferred_and_python_can_be_named(tmp_path):
    pythons = {"python3": "3.9", "python3.11": "3.11", "python3.13": "3.13"}
    assert plan(run(tmp_path, {**ARM, "SW_VERS": "14.5"}, pythons=pythons))["python"] \
        .endswith("/python3.13 (3.13)")
    named = tmp_path / "mine"
    named.mkdir()
    command(named, "py", "echo 3.9")
    done = run(tmp_path, {**ARM, "SW_VERS": "14.5", "PYTHON": str(named / "py")})
    assert done.returncode == 1
    assert f"PYTHON={named / 'py'} is Python 3.9" in done.stderr


def test_a_terminal_under_rosetta_is_stopped_with_the_native_command(tmp_path):
    done = run(tmp_path, {**INTEL, "PROC_TRANSLATED": "1"})
    assert done.returncode == 1 and "arch -arm64 bash setup.sh" in done.stderr


def test_linux_keeps_its_install_and_checks_for_a_compiler(tmp_path):
    linux = {"UNAME_S": "Linux", "UNAME_M": "x86_64"}
    chosen = plan(run(tmp_path, linux))
    assert chosen["torch"].startswith("torch==2.13.0")
    assert chosen["llama.cpp"] == "compile llama-cpp-python (CMAKE_ARGS=-DGGML_NATIVE=OFF)"
    done = run(tmp_path, linux, compiler=False)
    assert done.returncode == 1 and "build-essential" in done.stderr
