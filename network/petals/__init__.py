"""The span runtime: Petals and hivemind in their own virtual environment, run as processes this
node supervises (DHT bootstrap, span servers, the distributed client). Empty until layer spans land.
"""
