import pytest

from simulators.cohort import nhs_number_for
from telehealth.nhs import nhs_number_valid, with_check_digit


@pytest.mark.parametrize("number", ["943 476 5919", "9434765919", "401-023-2137"])
def test_valid_numbers(number: str) -> None:
    assert nhs_number_valid(number)


@pytest.mark.parametrize("number", ["9434765918", "943476591", "94347659190", "abcdefghij", ""])
def test_invalid_numbers(number: str) -> None:
    assert not nhs_number_valid(number)


def test_check_digit_ten_means_no_valid_number() -> None:
    for stem in (f"{n:09d}" for n in range(100_000_000, 100_000_200)):
        number = with_check_digit(stem)
        assert number is None or nhs_number_valid(number)


def test_generated_cohort_numbers_are_valid_and_distinct() -> None:
    numbers = [nhs_number_for(i) for i in range(2000)]
    assert all(nhs_number_valid(n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
