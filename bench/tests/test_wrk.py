"""The benchmark reads wrk's report correctly (no load is generated here)."""

from __future__ import annotations

import pytest

from bench.wrk import parse

REPORT = """Running 5s test @ http://127.0.0.1:40000/read
  2 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.52ms    2.10ms  40.12ms   95.12%
    Req/Sec   540.12     60.10   670.00     70.00%
  Latency Distribution
     50%  851.00us
     75%    1.20ms
     90%    2.50ms
     99%   12.37ms
  5401 requests in 5.01s, 1.02MB read
  Non-2xx or 3xx responses: 3
  Socket errors: connect 0, read 1, write 0, timeout 2
Requests/sec:   1078.04
Transfer/sec:    208.33KB
"""


def test_figures_and_units_are_read():
    result = parse(REPORT)
    assert result.requests == 5401
    assert result.seconds == pytest.approx(5.01)
    assert result.rps == pytest.approx(1078.04)
    assert result.p50 == pytest.approx(851e-6)
    assert result.p99 == pytest.approx(12.37e-3)
    assert result.errors == 6


def test_output_without_figures_is_refused():
    with pytest.raises(ValueError, match="cannot read wrk output"):
        parse("unable to connect to 127.0.0.1:1 Connection refused")


def test_cookie_script_sends_the_method_and_one_cookie_per_thread(tmp_path):
    from bench.wrk import cookie_script

    script = cookie_script(["a=1", 'b="2"'], tmp_path, method="POST").read_text()
    assert 'wrk.method = "POST"' in script
    assert '{"a=1", "b=\\"2\\""}' in script
    assert "% #cookies" in script  # the Lua modulo survived the formatting
    with pytest.raises(ValueError, match="unsupported method"):
        cookie_script(["a=1"], tmp_path, method="DELETE")


def test_statements_are_counted_by_their_first_word():
    from tests.support.counting import verb_of

    assert verb_of("  select 1") == "SELECT"
    assert verb_of("BEGIN") == "BEGIN"
    assert verb_of("UPDATE user_sessions SET version = %(v)s") == "UPDATE"
