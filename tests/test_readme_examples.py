"""The README's tool and client examples run exactly as written."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from process_helpers import read_listening_line, stop_process

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_tool_and_client_examples_run_as_written(tmp_path):
    blocks = [b for b in _python_blocks() if "MyStreamingTool" in b or "streaming_client" in b or "use_streaming" in b]
    tool_src = next(b for b in blocks if "class MyStreamingTool" in b)
    client_src = next(b for b in blocks if "async with Client()" in b)
    (tmp_path / "streaming_tool.py").write_text(tool_src)
    (tmp_path / "streaming_client.py").write_text(client_src)
    server = subprocess.Popen(
        [sys.executable, "streaming_tool.py", "/ip4/127.0.0.1/tcp/0"], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        multiaddr = read_listening_line(server, timeout=30)
        out = subprocess.run([sys.executable, "streaming_client.py", multiaddr], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "{'items': [1, 2, 3]}"
        chunks = [l for l in lines if l.startswith("Received chunk:")]
        assert len(chunks) == 5
        assert "'id': 1, 'data': 'Item 1'" in chunks[0] and "'id': 5, 'data': 'Item 5'" in chunks[4]
        assert lines[-1] == "Streaming complete"
    finally:
        stop_process(server)
