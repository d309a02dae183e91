"""
Words and variables of Dockerfile instructions as moby's shell.Lex reads
them: quotes, backslash escapes, C{$VAR}, C{${VAR}}, C{${VAR:-word}} and
C{${VAR:+word}}.
"""

import re
from typing import Dict, List

from ...errors import InvalidParameter

_NAME = re.compile(r"[A-Za-z0-9_]")


def process_word(word: str, env: Dict[str, str]) -> str:
    """C{word} with its variables replaced and quotes removed."""
    words = _lex(word, env, split=False)
    return words[0] if words else ""


def process_words(text: str, env: Dict[str, str]) -> List[str]:
    """C{text} split into words, each processed."""
    return _lex(text, env, split=True)


def _lex(text: str, env: Dict[str, str], split: bool) -> List[str]:
    words: List[str] = []
    current: List[str] = []
    started = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if split and ch in " \t\n":
            if started:
                words.append("".join(current))
                current, started = [], False
            i += 1
            continue
        started = True
        if ch == "\\":
            if i + 1 < n:
                current.append(text[i + 1])
                i += 2
            else:
                current.append(ch)
                i += 1
            continue
        if ch == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise InvalidParameter("unexpected end of statement while looking for matching single-quote")
            current.append(text[i + 1:end])
            i = end + 1
            continue
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$':
                    current.append(text[i + 1])
                    i += 2
                elif text[i] == "$":
                    value, i = _variable(text, i, env)
                    current.append(value)
                else:
                    current.append(text[i])
                    i += 1
            if i >= n:
                raise InvalidParameter("unexpected end of statement while looking for matching double-quote")
            i += 1
            continue
        if ch == "$":
            value, i = _variable(text, i, env)
            current.append(value)
            continue
        current.append(ch)
        i += 1
    if started:
        words.append("".join(current))
    return words


def _variable(text: str, i: int, env: Dict[str, str]):
    """The value of the variable at C{text[i]} (a C{$}) and the index after it."""
    n = len(text)
    i += 1
    if i < n and text[i] == "{":
        end = text.find("}", i)
        if end < 0:
            raise InvalidParameter("missing '}'")
        inner = text[i + 1:end]
        m = re.match(r"([A-Za-z0-9_]+)(?::([-+?])(.*))?$", inner, re.S)
        if not m:
            raise InvalidParameter("bad substitution")
        name, op, word = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name)
        if op == "-":
            value = value if value else process_word(word, env)
        elif op == "+":
            value = process_word(word, env) if value else ""
        elif op == "?":
            if not value:
                raise InvalidParameter("%s: %s" % (name, word or "is not allowed to be unset"))
        return value or "", end + 1
    start = i
    while i < n and _NAME.match(text[i]):
        i += 1
    if i == start:
        return "$", i
    return env.get(text[start:i], ""), i
