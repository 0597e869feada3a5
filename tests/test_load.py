"""8 concurrent users against the app on localhost: every request answered correctly, memory flat."""

from __future__ import annotations

from fmblur.bench.load import run_load


def test_eight_concurrent_users(app_server):
    server, url = app_server
    report = run_load(url, server.pid, users=8, rounds=2, with_video=True)
    print("\n" + report.table())
    assert report.errors == []
    assert len(report.latencies_s["image"]) == 16 and len(report.latencies_s["video"]) == 8
    # Flat: 24 requests may not grow the server by more than 300 MB over its warmed-up size.
    assert report.rss_end_mb - report.rss_after_warmup_mb < 300, report.table()
