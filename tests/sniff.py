"""Record every frame a namespace's eth0 receives, for the LAN tests that check what a device was
sent (run inside a namespace the test built; never on the host). Usage:
  sniff.py OUT_FILE   (prints {"sniffing": true} once listening; stops when stdin closes)
Each frame is written as a 4-byte big-endian length and the frame's bytes."""
from __future__ import annotations

import json
import select
import socket
import sys

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def main() -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    with open(sys.argv[1], "wb") as out:
        print(json.dumps({"sniffing": True}), flush=True)
        while True:
            ready, _w, _x = select.select([sock, sys.stdin], [], [])
            if sys.stdin in ready and not sys.stdin.readline():
                return
            if sock in ready:
                frame, address = sock.recvfrom(65535)
                if address[2] != PACKET_OUTGOING:
                    out.write(len(frame).to_bytes(4, "big") + frame)
                    out.flush()


if __name__ == "__main__":
    main()
