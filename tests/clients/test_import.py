"""`import clients` (and the client library) must work where torch cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_clients_import_without_torch():
    code = textwrap.dedent(
        """
        import sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked for this test")
                return None

        sys.meta_path.insert(0, BlockTorch())
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("blocker did not work")
        import clients
        from clients import PerceptionClient, AsyncPerceptionClient, PerceptionResult
        from clients.video import run_video
        import clients.local, clients.codec, clients.shm, world.kitti
        assert "torch" not in sys.modules, "torch got imported"
        print("ok", PerceptionClient.__name__, AsyncPerceptionClient.__name__)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok PerceptionClient AsyncPerceptionClient" in proc.stdout


def test_missing_tritonclient_gives_install_hint():
    code = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "tritonclient" or name.startswith("tritonclient."):
                    raise ImportError("blocked")
                return None

        sys.meta_path.insert(0, Block())
        from clients import PerceptionClient
        from serving.errors import MissingDependencyError
        try:
            PerceptionClient("127.0.0.1:1")
        except MissingDependencyError as exc:
            print("hint:", exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "perception-serving[client]" in proc.stdout
