"""``stunet.shapes.stats``: McNemar's exact test, Tango's paired interval, the paired-binary helper, and
``stunet.shapes.prompts``: one seed arithmetic for eval and compare."""
import math

import numpy as np
import pytest

from stunet.shapes import compare as C
from stunet.shapes import evaluate as E
from stunet.shapes import prompts as P
from stunet.shapes import stats as S

Z2 = 1.959963984540054 ** 2


def test_mcnemar_exact():
    assert S.mcnemar_p(0, 0) == 1.0 and S.mcnemar_p(0, 4) == pytest.approx(2 / 16)
    assert S.mcnemar_p(1, 8) == pytest.approx(2 * 10 / 512)


def test_tango_interval_matches_the_published_example_and_the_closed_form():
    # Fagerland, Lydersen & Laake (2014), the airway example: n12 = 1, n21 = 7 of 21 pairs
    lo, hi = S.tango_interval(1, 7, 21)
    assert (round(lo, 3), round(hi, 3)) == (-0.517, -0.026)
    # no discordant pair: the score interval is +-z^2 / (n + z^2), not a point
    for n in (18, 108, 360):
        assert S.tango_interval(0, 0, n) == pytest.approx((-Z2 / (n + Z2), Z2 / (n + Z2)), abs=1e-9)
    # symmetric in the roles, and the estimate inside
    lo2, hi2 = S.tango_interval(7, 1, 21)
    assert (lo2, hi2) == pytest.approx((-hi, -lo), abs=1e-9) and lo2 < 6 / 21 < hi2
    assert S.tango_interval(0, 21, 21)[0] == pytest.approx(-1.0, abs=1e-6)
    with pytest.raises(ValueError):
        S.tango_interval(5, 6, 10)


def test_tango_constrained_mle_is_the_likelihood_maximum():
    b, c, n = 5, 3, 40
    for d in (-0.2, 0.05, 0.1):
        q = np.linspace(max(1e-7, -d + 1e-7), (1 - d) / 2 - 1e-7, 400001)
        ll = b * np.log(q + d) + c * np.log(q) + (n - b - c) * np.log(1 - 2 * q - d)
        q_grid = q[ll.argmax()]
        var = 2 * q_grid + d * (1 - d)
        assert S._tango_score(b, c, n, d) == pytest.approx((b - c - n * d) / math.sqrt(n * var), rel=1e-4)


def test_paired_binary():
    a = [True] * 8 + [False] * 2
    b = [True] * 5 + [False] * 3 + [True, False]
    r = S.paired_binary(a, b)
    assert (r.pairs, r.only_a, r.only_b, r.a_pct, r.b_pct) == (10, 3, 1, 80.0, 60.0)
    assert r.difference == pytest.approx(20.0) and r.p == S.mcnemar_p(3, 1)
    assert r.ci95[0] < r.difference < r.ci95[1]
    with pytest.raises(ValueError):
        S.paired_binary([True], [True, False])


def test_bootstrap_is_seeded():
    v = np.arange(20.0)
    one = S.bootstrap_mean_ci(v, np.random.default_rng(0))
    assert one == S.bootstrap_mean_ci(v, np.random.default_rng(0)) and one[0] < v.mean() < one[1]


def test_eval_and_compare_share_one_seed_arithmetic():
    assert C.world_seed is P.world_seed and C.SEED_BASE == P.SEED_BASE and C.compare_prompts is P.compare_prompts
    assert E.default_prompts is P.default_prompts and E.load_prompts is P.load_prompts
    assert P.world_seed(3, 2) == P.WORLD_SEED * 2 + 3
    g = P.batch_generator(2, 8)
    assert g.initial_seed() == P.SEED_BASE * 2 + 8
    assert P.seed_range(5, 3) == [5, 6, 7] and P.seed_list(2) == [0, 1] and P.seed_list(np.int64(1)) == [0]
    with pytest.raises(ValueError):
        P.seed_range(0, 0)
