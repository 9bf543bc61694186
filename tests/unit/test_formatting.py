from dvcpulse_common.formatting import format_count, format_percent, format_rate


def test_plan_appendix_figures():
    # The plan prints 24.965/39.219 as 63,65% (cut, not rounded to 63,66%).
    assert format_rate(24_965, 39_219) == "63,65%"
    assert format_rate(7_113, 23_487) == "30,28%"
    assert format_rate(10_761, 19_309) == "55,73%"
    assert format_rate(42_839, 82_015) == "52,23%"


def test_edges():
    assert format_rate(0, 0) == "N/A"
    assert format_rate(0, 7) == "0,00%"
    assert format_rate(7, 7) == "100,00%"
    assert format_rate(1, 3) == "33,33%"
    assert format_percent(19.08) == "19,08%"
    assert format_percent(None) == "N/A"
    assert format_percent(-2.5) == "-2,50%"
    assert format_count(42_839) == "42.839"
