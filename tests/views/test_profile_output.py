"""Profile labels on titles, captions and figures; figures shown once; JSON folded and escaped."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ftrl_lab.views.output import collapsed_json  # noqa: E402
from ftrl_lab.views.profile import PLUMBING, captioned, label_figure, titled  # noqa: E402


def test_quick_titles_and_captions_say_plumbing_check():
    assert titled("curves", quick=False) == "curves"
    assert titled("curves", quick=True) == f"{PLUMBING}: curves" and "QUICK" in PLUMBING
    html = captioned(pd.DataFrame({"a": [1]}), "before/after", quick=True).to_html()
    assert f"{PLUMBING}: before/after" in html
    assert PLUMBING not in captioned(pd.DataFrame({"a": [1]}), "before/after", quick=False).to_html()


def test_label_figure_prefixes_the_suptitle_or_the_axes_title():
    fig, ax = plt.subplots()
    fig.suptitle("run")
    assert label_figure(fig, True)._suptitle.get_text() == f"{PLUMBING}: run"
    fig2, ax2 = plt.subplots()
    ax2.set_title("bars")
    label_figure(fig2, True)
    assert ax2.get_title() == f"{PLUMBING}\nbars"
    fig3, _ = plt.subplots()
    assert label_figure(fig3, False)._suptitle is None
    plt.close("all")


def test_collapsed_json_is_folded_and_escaped():
    out = collapsed_json({"code": "<img src=x onerror=alert(1)>"}, "tool <doc>").data
    assert out.startswith("<details><summary>tool &lt;doc&gt;</summary>")
    assert "<img" not in out and "&lt;img src=x" in out
