"""Sample-count claims are held to the trainer's own measured rate and the fleet's (mlitb/trust/claims.py)."""

from mlitb.trust.claims import allowed_samples, measured_rate, median_rate

LIMITS = dict(start_sps=2_000, growth=2.0, fleet_factor=8.0, hard_sps=200_000)


def test_a_trainer_without_a_record_in_a_new_project_may_claim_the_start_rate():
    assert allowed_samples(None, None, 4_000, **LIMITS) == 8_000


def test_a_trainer_may_claim_at_most_twice_its_own_measured_rate():
    assert allowed_samples(3_000, None, 4_000, **LIMITS) == 24_000
    assert allowed_samples(3_000, 1_000, 4_000, **LIMITS) == 24_000


def test_a_newcomer_to_a_fleet_may_claim_the_fleets_median_rate():
    assert allowed_samples(None, 1_000, 4_000, **LIMITS) == 4_000
    assert allowed_samples(10, 1_000, 4_000, **LIMITS) == 4_000  # a slow start does not hold it below the fleet


def test_a_trainer_may_claim_at_most_eight_times_the_fleets_median_rate():
    assert allowed_samples(50_000, 1_000, 4_000, **LIMITS) == 32_000


def test_the_absolute_cap_is_a_ceiling():
    assert allowed_samples(1e9, 1e9, 1_000, **LIMITS) == 200_000


def test_work_shorter_than_a_second_counts_as_one_second():
    assert allowed_samples(None, None, 200, **LIMITS) == 2_000


def test_an_instant_answer_does_not_buy_a_higher_measured_rate():
    assert measured_rate(8_000, 0.01, 4_000) == 2_000
    assert measured_rate(8_000, 8.0, 4_000) == 1_000


def test_the_fleet_median_ignores_a_minority_of_inflated_rates():
    assert median_rate([]) is None
    assert median_rate([1_000, 1_200, 200_000]) == 1_200
    assert median_rate([1_000, 3_000]) == 2_000
