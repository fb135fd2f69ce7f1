"""Executes one notebook headless with its Jupyter kernel (the Deno kernel for ours).

    python3 notebooks/_execute.py NOTEBOOK OUTPUT [--timeout SECONDS] [--grace SECONDS]

Runs every code cell in order with the kernel's working directory set to the notebook's folder,
writes the executed notebook to OUTPUT (also when a cell fails, so the error can be read there)
and exits with 1 on a cell error, 2 on bad arguments or a missing package, 0 otherwise.

Why not plain `jupyter nbconvert --execute`: the Deno kernel sometimes sends a cell's result
(execute_result, display_data) after it has reported the cell idle, and nbclient stops reading a
cell's messages at idle, so that output is lost. After idle we keep reading the cell's messages
for a grace period, restarted by every late message (see `drain_late`).

Called by `deno task test:notebooks` (lib/cli/notebooks.ts). Needs nbclient and nbformat
(Debian: apt-get install jupyter-nbconvert jupyter-client, which bring python3-nbclient).
"""

import argparse
import asyncio
import queue
import sys
import time

#: Seconds to keep listening after a cell reported idle (restarted by each late message).
DEFAULT_GRACE = 0.5


async def drain_late(get_msg, handle, parent_id, grace, clock=time.monotonic):
    """Reads the messages a cell's kernel sends after it reported idle.

    `get_msg(timeout)` is an awaitable that returns the next IOPub message or raises
    `queue.Empty` after `timeout` seconds; `handle(msg)` records a message. Messages of other
    requests and status messages are skipped. Listening stops `grace` seconds after idle, or after
    the last late message of this cell. Returns the number of late messages handled.
    """
    late = 0
    deadline = clock() + grace
    while True:
        left = deadline - clock()
        if left <= 0:
            return late
        try:
            msg = await get_msg(left)
        except queue.Empty:
            return late
        if msg.get("parent_header", {}).get("msg_id") != parent_id:
            continue
        if msg.get("msg_type") == "status":
            continue
        handle(msg)
        late += 1
        deadline = clock() + grace


def make_client_class():
    """The nbclient NotebookClient subclass that drains late messages (imports nbclient)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionComplete
    from nbclient.util import ensure_async

    class GraceNotebookClient(NotebookClient):
        """NotebookClient that keeps reading a cell's output for `grace` seconds after idle."""

        grace = DEFAULT_GRACE
        late_messages = 0

        def process_message(self, msg, cell, cell_index):
            # nbclient replaces an output in place on update_display_data and keeps no trace of
            # the updates; count them on the output (after nbclient has replaced its metadata)
            # so the checker can tell a live figure from one shown once.
            try:
                return super().process_message(msg, cell, cell_index)
            finally:
                count_display_message(self, msg)

        async def _async_poll_output_msg(self, parent_msg_id, cell, cell_index):
            assert self.kc is not None
            while True:
                msg = await ensure_async(self.kc.iopub_channel.get_msg(timeout=None))
                if msg["parent_header"].get("msg_id") != parent_msg_id:
                    continue
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    break

            async def get_msg(timeout):
                return await ensure_async(self.kc.iopub_channel.get_msg(timeout=timeout))

            def handle(msg):
                try:
                    self.process_message(msg, cell, cell_index)
                except CellExecutionComplete:
                    pass

            self.late_messages += await drain_late(get_msg, handle, parent_msg_id, self.grace)

    return GraceNotebookClient


#: Key of the output metadata where `count_display_message` writes its counts.
DISPLAY_KEY = "perennial"


def count_display_message(client, msg):
    """Counts a display_data or update_display_data message of a display id on its outputs.

    Writes `{"perennial": {"displayMessages": n}}` into the metadata of every output shown under
    that display id: 1 for a figure shown once, 1 + updates for a live one.
    """
    if msg.get("msg_type") not in ("display_data", "update_display_data"):
        return
    display_id = msg.get("content", {}).get("transient", {}).get("display_id")
    if not display_id:
        return
    counts = client.__dict__.setdefault("_perennial_display_counts", {})
    counts[display_id] = counts.get(display_id, 0) + 1
    for cell_idx, indices in client._display_id_map.get(display_id, {}).items():
        outputs = client.nb["cells"][cell_idx]["outputs"]
        for i in indices:
            meta = dict(outputs[i].get("metadata") or {})
            meta[DISPLAY_KEY] = {"displayMessages": counts[display_id]}
            outputs[i]["metadata"] = meta


def end_sources_with_newline(nb):
    """Makes every non-empty cell source end with a newline; returns how many changed.

    `deno fmt --check` (deno 2.x, without its cache) reports a notebook whose cell sources lack
    a final newline as unformatted, while `deno fmt` leaves it as it is; Jupyter front ends
    save sources without one. Normalizing here keeps written-back notebooks passing the check.
    """
    changed = 0
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        text = "".join(src) if isinstance(src, list) else src
        if text and not text.endswith("\n"):
            cell["source"] = text + "\n"
            changed += 1
    return changed


def log(text):
    print(text, file=sys.stderr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebook")
    parser.add_argument("output")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per cell")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE)
    parser.add_argument("--kernel", default=None, help="kernel name (default: the notebook's)")
    args = parser.parse_args(argv)
    try:
        import nbformat
        from nbclient.exceptions import CellExecutionError
        client_class = make_client_class()
    except ImportError as e:
        log(f"_execute.py: {e}; install Jupyter: apt-get install -y --no-install-recommends "
            "jupyter-nbconvert jupyter-client")
        return 2
    import os

    nb = nbformat.read(args.notebook, as_version=4)
    folder = os.path.dirname(os.path.abspath(args.notebook))
    options = dict(timeout=int(args.timeout), resources={"metadata": {"path": folder}})
    if args.kernel:
        options["kernel_name"] = args.kernel
    client = client_class(nb, **options)
    client.grace = args.grace
    cells = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    started = time.monotonic()
    count = {"n": 0, "t": started}

    def on_start(cell, cell_index):
        if cell.cell_type != "code" or not cell.source.strip():
            return
        count["n"] += 1
        count["t"] = time.monotonic()
        first = cell.source.strip().splitlines()[0][:60]
        log(f"  cell {count['n']}/{len(cells)}: {first}")

    client.on_cell_start = on_start
    status = 0
    try:
        client.execute()
    except CellExecutionError as e:
        log(f"_execute.py: a cell failed in {args.notebook}:\n{e}")
        status = 1
    except Exception as e:  # kernel died, timeout, ...
        log(f"_execute.py: {type(e).__name__} in {args.notebook}: {e}")
        status = 1
    finally:
        end_sources_with_newline(nb)
        nbformat.write(nb, args.output)
    log(f"  {len(cells)} code cells in {time.monotonic() - started:.1f} s, "
        f"{client.late_messages} late message(s) kept")
    return status


if __name__ == "__main__":
    sys.exit(main())
