"""QEMU guestfwd -cmd: relay one guest connection (stdin/stdout) to HOST PORT over TCP.

QEMU runs this once per connection the guest opens to 10.0.2.100:80 (a `tcp:` target
carries only the first connection: XEN-LAB.md). Stdlib only.
"""

import os
import socket
import sys
import threading


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        conn = socket.create_connection((host, port), timeout=10)
    except OSError:
        return  # refused: the guest sees the connection close
    conn.settimeout(None)

    def upstream() -> None:
        while data := os.read(0, 65536):
            conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := conn.recv(65536):
        os.write(1, data)
    conn.close()


if __name__ == "__main__":
    main()
