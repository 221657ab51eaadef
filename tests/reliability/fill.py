"""``python -m tests.reliability.fill URL N H W``: N closed-loop clients sending requests of 8 frames
(HxW) to the raw network ``tiny`` until stdin closes, so that its queue stays full. A process of its
own: the test's client timings are not disturbed by these threads holding the GIL."""

from __future__ import annotations

import contextlib
import sys
import threading

import numpy as np
import tritonclient.grpc as grpcclient


def main(url: str, n: int, hw: tuple[int, int]) -> None:
    stop = threading.Event()
    images = np.zeros((8, 3, *hw), np.uint8)

    def loop() -> None:
        client = grpcclient.InferenceServerClient(url)
        tensor = grpcclient.InferInput("images", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a full queue refuses some: keep filling
                client.infer("tiny", [tensor], client_timeout=60)
        client.close()

    threads = [threading.Thread(target=loop) for _ in range(n)]
    for t in threads:
        t.start()
    print("filling", flush=True)
    sys.stdin.read()
    stop.set()
    for t in threads:
        t.join(60)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), (int(sys.argv[3]), int(sys.argv[4])))
