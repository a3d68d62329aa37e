"""Point-in-time fundamentals: visible from the announcement date on, never before."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.errors import DataValidationError
from engine.sources import synthetic


@pytest.fixture(scope="module")
def panel():
    return synthetic(4, 40, seed=5, listing_fraction=0.0, delisting_fraction=0.0)


def announcements() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["S0000", "S0000", "S0001", "S0002", "NOPE"],
            # 2010-01-09 is a Saturday: visible from Monday 2010-01-11
            "announce_date": ["2010-01-06", "2010-01-20", "2010-01-09", "2010-03-10", "2010-01-05"],
            "eps": [1.0, 2.0, 3.0, 4.0, 9.0],
            "pe": [10.0, 20.0, np.nan, 40.0, 90.0],
        }
    )


def test_values_appear_on_announcement_and_persist(panel):
    p = panel.with_fundamentals(announcements())
    eps, pe = p["eps"], p["pe"]
    d = p.dates
    i = d.get_loc(pd.Timestamp("2010-01-06"))
    j = d.get_loc(pd.Timestamp("2010-01-20"))
    assert np.isnan(eps[:i, 0]).all()  # before the first announcement: NaN
    assert (eps[i:j, 0] == 1.0).all() and (eps[j:, 0] == 2.0).all()
    k = d.get_loc(pd.Timestamp("2010-01-11"))  # first trading day on/after the Saturday
    assert np.isnan(eps[:k, 1]).all() and (eps[k:, 1] == 3.0).all()
    assert np.isnan(pe[:, 1]).all()  # a NaN announcement stays NaN (not an older value)
    assert np.isnan(eps[:, 2]).all()  # announced after the last date: never visible
    assert np.isnan(eps[:, 3]).all()  # no announcements
    assert p.shape == panel.shape
    for f in panel.fields:  # existing arrays are shared, not copied
        assert p[f] is panel[f]


def test_no_look_ahead(panel):
    """Changing or adding a future announcement never changes an earlier row."""
    base = panel.with_fundamentals(announcements())["eps"]
    changed = announcements()
    changed.loc[1, "eps"] = -100.0  # S0000's 2010-01-20 value
    extra = pd.DataFrame(
        {"symbol": ["S0003"], "announce_date": ["2010-02-01"], "eps": [7.0], "pe": [1.0]}
    )
    after = panel.with_fundamentals(pd.concat([changed, extra], ignore_index=True))["eps"]
    j = panel.dates.get_loc(pd.Timestamp("2010-01-20"))
    np.testing.assert_array_equal(after[:j], base[:j])
    assert (after[j:, 0] == -100.0).all()
    m = panel.dates.get_loc(pd.Timestamp("2010-02-01"))
    assert np.isnan(after[:m, 3]).all() and (after[m:, 3] == 7.0).all()
    # every visible value was announced on or before the row's date
    ann = pd.DatetimeIndex(announcements()["announce_date"])
    first = ann[announcements()["symbol"] == "S0000"].min()
    assert np.isnan(base[panel.dates < first, 0]).all()


def test_lag_delays_visibility(panel):
    p0 = panel.with_fundamentals(announcements())["eps"]
    p1 = panel.with_fundamentals(announcements(), lag=1)["eps"]
    np.testing.assert_array_equal(p1[1:], p0[:-1])


def test_fundamental_errors(panel):
    dup = pd.concat([announcements(), announcements().iloc[[0]]], ignore_index=True)
    with pytest.raises(DataValidationError, match="duplicate"):
        panel.with_fundamentals(dup)
    with pytest.raises(DataValidationError, match="announce_date"):
        panel.with_fundamentals(announcements().drop(columns="announce_date"))
    with pytest.raises(ValueError, match="already exist"):
        panel.with_fundamentals(announcements().rename(columns={"eps": "close"}))
    bad = announcements().astype({"eps": object})
    bad.loc[0, "eps"] = "n/a?"
    with pytest.raises(DataValidationError, match="non-numeric"):
        panel.with_fundamentals(bad)
