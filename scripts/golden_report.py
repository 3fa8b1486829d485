#!/usr/bin/env python3
"""Golden numbers for the report tests (src/report/tests/), from references outside this repo.

1. TensorBoard's scalar smoothing (its frontend's debiased EMA), written out in numpy, on a
   fixed series: the values `ema_debiased` must give (src/report/tests/charts.rs).
2. An event file written by TensorBoard's own Python writer (`tensorboard.summary.writer`
   RecordWriter + the `event_pb2` protobufs): the bytes `speedrun export tensorboard` must write
   for the same events (src/report/tests/tensorboard.rs).

Needs numpy and tensorboard (`pip install tensorboard`, in scripts/requirements.txt).
    python scripts/golden_report.py
"""
import io

import numpy as np


def tensorboard_ema(ys, w):
    # TensorBoard's smoothing: last = last*w + (1-w)*y; debias by 1 - w^n (n finite values so far);
    # non-finite values pass through unchanged.
    last, n, out = 0.0, 0, []
    for y in ys:
        if not np.isfinite(y):
            out.append(y)
            continue
        last = last * w + (1 - w) * y
        n += 1
        out.append(last / (1 - w**n))
    return out


ys = [10.9, 8.7, 7.8, float("nan"), 7.5, 7.3, 7.4, 7.1]
print("ema w=0.9 of", ys)
print("  ", ", ".join(repr(float(v)) for v in tensorboard_ema(ys, 0.9)))
print("ema w=0.5 of [4, 2]:", tensorboard_ema([4.0, 2.0], 0.5))

from tensorboard.compat.proto import event_pb2, summary_pb2  # noqa: E402
from tensorboard.summary.writer.record_writer import RecordWriter  # noqa: E402

buf = io.BytesIO()
w = RecordWriter(buf)
w.write(event_pb2.Event(wall_time=1700000000.5, step=0, file_version="brain.Event:2").SerializeToString())
summary = summary_pb2.Summary(
    value=[
        summary_pb2.Summary.Value(tag="loss/train", simple_value=3.25),
        summary_pb2.Summary.Value(tag="lr/muon", simple_value=0.0),
    ]
)
w.write(event_pb2.Event(wall_time=1700000001.25, step=7, summary=summary).SerializeToString())
print("event file bytes (hex):")
print("  ", buf.getvalue().hex())
