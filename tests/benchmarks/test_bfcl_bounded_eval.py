"""bounded_eval: eval's value for literal expressions, refusal for code and for huge values."""

import ast

import pytest

from ftrl_lab.benchmarks import bounded_eval


def _eval(source):
    return bounded_eval.evaluate(ast.parse(source, mode="eval"))


@pytest.mark.parametrize(
    "source",
    [
        "'x' + '**2'",
        "2 * 3 + 1",
        "7 // 2 - 1.5",
        "True + 1",
        "[1] + [2, 3]",
        "(1, 2) * 2",
        "'%05.1f' % 3.14159",
        "f'{1 + 1}-{\"a\"!r:>4}'",
        "str(5) + 'x'",
        "len('abc') * 2",
        "sorted([3, 1, 2], key=abs) + [0]",
        "'a,b'.split(',') + ['c']",
        "'x'.upper() + 'y'.join(['1', '2'])",
        "(n := 3) * n",
        "[1, 2, 3][1:] + [4]",
        "1 if 2 > 1 else 0",
        "{'a': 1} | {'b': 2}",
        "2 ** 100 - 1",
        "1 / 3 + 0.5",
    ],
)
def test_values_match_eval(source):
    assert repr(_eval(source)) == repr(eval(source))  # noqa: S307 - test oracle on literals


@pytest.mark.parametrize(
    "source",
    [
        "__import__('os').system('true') + 1",
        "open('/etc/passwd').read() + ''",
        "x + 1",
        "(lambda: 1)() + 1",
        "[i for i in range(3)] + []",
        "().__class__ + 1",
        "2 ** 100000000",
        "'x' * 10 ** 9",
        "[0] * 10 ** 8",
        "1 << 100000000",
        "'x'.ljust(10 ** 9) + ''",
        "'%*d' % (10 ** 9, 1)",
        "'{:>100000000}'.format(1)",
        "f'{1:>{10 ** 9}}'",
        "round(1, -(10 ** 6)) + 1",
        "(_method := 1) + 1",
    ],
)
def test_refused(source):
    with pytest.raises(bounded_eval.Refused):
        _eval(source)


def test_own_errors_propagate():
    with pytest.raises(ZeroDivisionError):
        _eval("1 / 0")
    with pytest.raises(TypeError):
        _eval("'a' + 1")
