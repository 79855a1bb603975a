"""The edge's CPU figure (issue 15, item 4): per interval, in cores, with a Clock."""

from __future__ import annotations

import time

from twisted.internet.task import Clock
from twisted.trial import unittest

from ct.common.cpu import CpuMeter


class CpuMeterTests(unittest.SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.used = 100.0  # CPU seconds of the process so far
        self.meter = CpuMeter(self.clock, interval=2.0, cpu_seconds=lambda: self.used)
        self.addCleanup(self.meter.stop)

    def run_for(self, wall: float, cpu: float) -> None:
        self.used += cpu
        self.clock.advance(wall)

    def test_unknown_until_a_whole_interval(self):
        self.meter.start()
        self.run_for(1.0, 1.0)
        self.assertIsNone(self.meter.fraction)
        self.run_for(1.0, 0.0)
        self.assertEqual(self.meter.fraction, 0.5)

    def test_each_interval_on_its_own(self):
        self.meter.start()
        self.run_for(2.0, 2.0)
        self.assertEqual(self.meter.fraction, 1.0)
        self.run_for(2.0, 0.1)
        self.assertEqual(self.meter.fraction, 0.05)
        self.run_for(2.0, 5.0)  # threads: more than one core
        self.assertEqual(self.meter.fraction, 2.5)

    def test_stops(self):
        self.meter.start()
        self.meter.stop()
        self.run_for(10.0, 10.0)
        self.assertIsNone(self.meter.fraction)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_the_real_process_clock(self):
        meter = CpuMeter(self.clock, interval=1.0)
        meter.start()
        self.addCleanup(meter.stop)
        deadline = time.process_time() + 0.05
        while time.process_time() < deadline:
            pass  # 50 ms of CPU, "within" one simulated second
        self.clock.advance(1.0)
        self.assertGreaterEqual(meter.fraction, 0.04)
        self.assertLess(meter.fraction, 1.0)
