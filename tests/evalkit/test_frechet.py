"""The Fréchet distance itself: analytic cases, agreement with scipy's sqrtm where that works,
and sane behaviour where it does not."""
import warnings

import numpy as np
import pytest

from evalkit.errors import SampleSizeError
from evalkit.metrics.fid import (SmallSampleWarning, check_sample_size, feature_stats, fid_from_features,
                                 frechet_distance)


def test_set_against_itself_is_zero():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3000, 64)) @ rng.normal(size=(64, 64))
    mu, sigma = feature_stats(feats)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_rank_deficient_set_against_itself_is_zero():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(50, 256)) * 3  # 50 samples in 256 dims: covariance of rank 49
    mu, sigma = feature_stats(feats)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(128, 128))
    sigma = a @ a.T / 128
    mu1, mu2 = rng.normal(size=128), rng.normal(size=128)
    assert frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-9)


def test_diagonal_closed_form_including_zero_variances():
    # For diagonal covariances FID = ||mu1-mu2||^2 + sum (sqrt(a) - sqrt(b))^2; zeros make S1 S2 singular
    a = np.array([0.0, 1.0, 4.0, 0.0, 9.0])
    b = np.array([1.0, 0.0, 1.0, 0.0, 16.0])
    mu1, mu2 = np.zeros(5), np.arange(5.0)
    expected = np.sum(mu2 ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n,d", [(2000, 32), (400, 512)])
def test_agrees_with_scipy_sqrtm_formula(n, d):
    from cleanfid.fid import frechet_distance as clean_fid_frechet

    rng = np.random.default_rng(n + d)
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    f1 = rng.normal(size=(n, d)) @ mix
    f2 = rng.normal(size=(n, d)) @ mix * 1.3 + 0.2
    m1, s1 = feature_stats(f1)
    m2, s2 = feature_stats(f2)
    ref = clean_fid_frechet(m1, s1, m2, s2)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, rel=1e-6)


def test_too_few_samples_is_an_error_and_few_is_a_warning():
    with pytest.raises(SampleSizeError, match="at least 2"):
        check_sample_size(1, 2048, "set A")
    with pytest.warns(SmallSampleWarning, match="fewer than the 2048 feature dimensions"):
        check_sample_size(100, 2048, "set A")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_sample_size(5000, 2048, "set A")  # enough: no warning
    with pytest.raises(SampleSizeError):
        fid_from_features(np.zeros((1, 8)), np.zeros((5, 8)))


def test_non_finite_and_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        feature_stats(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="same feature extractor"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN or infinity"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.array([[np.inf, 0], [0, 1]]))
