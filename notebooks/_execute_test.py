"""Unit tests of the grace period of _execute.py (no Jupyter needed):
python3 -m unittest discover -s notebooks -p '_execute_test.py'"""

import asyncio
import queue
import unittest

from _execute import count_display_message, drain_late, end_sources_with_newline


class FakeIOPub:
    """Messages that arrive at given times, on a fake clock that get_msg advances."""

    def __init__(self, arrivals):
        self.now = 0.0
        self.arrivals = sorted(arrivals, key=lambda a: a[0])

    def clock(self):
        return self.now

    async def get_msg(self, timeout):
        if self.arrivals and self.arrivals[0][0] <= self.now + timeout:
            at, msg = self.arrivals.pop(0)
            self.now = max(self.now, at)
            return msg
        self.now += timeout
        raise queue.Empty()


def msg(parent, kind="execute_result"):
    return {"parent_header": {"msg_id": parent}, "msg_type": kind, "content": {}}


class FakeClient:
    """What count_display_message reads of an nbclient client: the notebook and the id map."""

    def __init__(self):
        self.nb = {"cells": [{"outputs": [{"metadata": {}}, {"metadata": {}}]}]}
        self._display_id_map = {"live": {0: [1]}}


class DisplayCountTest(unittest.TestCase):
    def test_counts_the_display_and_its_updates_on_the_output(self):
        client = FakeClient()
        shown = {"msg_type": "display_data", "content": {"transient": {"display_id": "live"}}}
        update = {"msg_type": "update_display_data",
                  "content": {"transient": {"display_id": "live"}}}
        for m in (shown, update, update, {"msg_type": "stream", "content": {}}):
            count_display_message(client, m)
        outputs = client.nb["cells"][0]["outputs"]
        self.assertEqual(outputs[1]["metadata"], {"perennial": {"displayMessages": 3}})
        self.assertEqual(outputs[0]["metadata"], {})

    def test_ignores_displays_without_an_id(self):
        client = FakeClient()
        count_display_message(client, {"msg_type": "display_data", "content": {}})
        self.assertEqual(client.nb["cells"][0]["outputs"][1]["metadata"], {})


def drain(arrivals, grace=0.5, parent="cell"):
    io = FakeIOPub(arrivals)
    got = []
    n = asyncio.run(drain_late(io.get_msg, got.append, parent, grace, clock=io.clock))
    return n, got, io


class DrainLateTest(unittest.TestCase):
    def test_keeps_a_result_sent_after_idle(self):
        n, got, _ = drain([(0.2, msg("cell"))])
        self.assertEqual(n, 1)
        self.assertEqual(got[0]["msg_type"], "execute_result")

    def test_stops_after_the_grace_period(self):
        n, got, io = drain([(0.7, msg("cell"))])
        self.assertEqual((n, got), (0, []))
        self.assertAlmostEqual(io.now, 0.5)

    def test_each_late_message_restarts_the_grace_period(self):
        n, _, _ = drain([(0.4, msg("cell", "display_data")), (0.8, msg("cell")), (1.2, msg("cell"))])
        self.assertEqual(n, 3)

    def test_skips_other_cells_and_status_messages(self):
        n, got, _ = drain([
            (0.1, msg("other")),
            (0.2, msg("cell", "status")),
            (0.3, msg("cell", "stream")),
        ])
        self.assertEqual(n, 1)
        self.assertEqual(got[0]["msg_type"], "stream")

    def test_zero_grace_reads_nothing(self):
        n, got, _ = drain([(0.0, msg("cell"))], grace=0)
        self.assertEqual((n, got), (0, []))


class SourcesTest(unittest.TestCase):
    def test_sources_end_with_a_newline(self):
        nb = {"cells": [
            {"cell_type": "code", "source": "1 + 1;"},
            {"cell_type": "markdown", "source": ["# Title\n", "text"]},
            {"cell_type": "code", "source": "done;\n"},
            {"cell_type": "code", "source": ""},
        ]}
        self.assertEqual(end_sources_with_newline(nb), 2)
        self.assertEqual([c["source"] for c in nb["cells"]],
                         ["1 + 1;\n", "# Title\ntext\n", "done;\n", ""])


if __name__ == "__main__":
    unittest.main()
