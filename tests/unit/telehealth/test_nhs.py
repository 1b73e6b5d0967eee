"""NHS number check digit (modulus 11), against published numbers and the scheme's guarantees.

Published valid numbers: 943 476 5919 is the NHS Data Dictionary's example of the check-digit
calculation; 900 000 0009 is the test patient of NHS England's Personal Demographics Service
(PDS FHIR API) sandbox; 401 023 2137 is a further example that passes the check. No test
here recomputes the weights: the function must agree with those numbers, and with what
modulus 11 is for (detecting any single wrong digit and any swap of neighbours).
"""

import itertools

import pytest

from simulators.cohort import nhs_number_for
from telehealth.nhs import nhs_number_valid, with_check_digit

PUBLISHED = ["943 476 5919", "9000000009", "401-023-2137"]


@pytest.mark.parametrize("number", PUBLISHED)
def test_published_numbers_are_valid(number: str) -> None:
    assert nhs_number_valid(number)


@pytest.mark.parametrize("number", PUBLISHED)
def test_the_check_digit_of_published_numbers_is_reproduced(number: str) -> None:
    digits = number.replace(" ", "").replace("-", "")
    assert with_check_digit(digits[:9]) == digits


@pytest.mark.parametrize("number", ["9434765918", "943476591", "94347659190", "abcdefghij", "", "9000000008"])
def test_invalid_numbers(number: str) -> None:
    assert not nhs_number_valid(number)


@pytest.mark.parametrize("number", PUBLISHED)
def test_every_single_digit_error_is_detected(number: str) -> None:
    """Modulus 11 with weights 10..2 catches any one wrong digit."""
    digits = number.replace(" ", "").replace("-", "")
    for position, wrong in itertools.product(range(10), "0123456789"):
        if digits[position] != wrong:
            assert not nhs_number_valid(digits[:position] + wrong + digits[position + 1 :])


@pytest.mark.parametrize("number", PUBLISHED)
def test_every_adjacent_transposition_is_detected(number: str) -> None:
    digits = number.replace(" ", "").replace("-", "")
    for i in range(9):
        if digits[i] != digits[i + 1]:
            swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
            assert not nhs_number_valid(swapped), swapped


def test_a_stem_whose_check_digit_would_be_ten_is_never_issued() -> None:
    # 000 000 04x: weighted sum 12, remainder 1, check digit 11 - 1 = 10, which the scheme
    # does not issue; no completion of it is valid.
    assert with_check_digit("000000040") is None
    assert not any(nhs_number_valid(f"000000040{d}") for d in range(10))


def test_generated_cohort_numbers_are_valid_and_distinct() -> None:
    numbers = [nhs_number_for(i) for i in range(2000)]
    assert all(nhs_number_valid(n) for n in numbers)
    assert len(set(numbers)) == len(numbers)
