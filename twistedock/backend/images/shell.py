"""
The Dockerfile's words: the parser's C{parseWords} and the shell lexer
(buildkit's shell.Lex) that expands C{$VAR} in an instruction's arguments.
"""

from typing import Dict, List, Tuple

from ...errors import InvalidParameter

#: The Dockerfile's default escape character.
ESCAPE = "\\"


def parse_words(rest: str) -> List[str]:
    """The Dockerfile parser's parseWords: split on blanks, quotes kept."""
    words: List[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    word = ""
    quote = ""
    blank_ok = False
    pos = 0
    n = len(rest)
    while pos <= n:
        ch = rest[pos] if pos < n else ""
        if phase == in_spaces:
            if pos == n:
                break
            if ch.isspace():
                pos += 1
                continue
            phase = in_word
        if phase in (in_word, in_quote) and pos == n:
            if blank_ok or word:
                words.append(word)
            break
        if phase == in_word:
            if ch.isspace():
                phase = in_spaces
                if blank_ok or word:
                    words.append(word)
                word = ""
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = in_quote
            if ch == ESCAPE:
                if pos + 1 == n:
                    pos += 1
                    continue
                word += ch
                pos += 1
                ch = rest[pos]
            word += ch
            pos += 1
            continue
        if phase == in_quote:
            if ch == quote:
                phase = in_word
            if ch == ESCAPE and quote != "'":
                if pos + 1 == n:
                    phase = in_word
                    pos += 1
                    continue
                pos += 1
                word += ch
                ch = rest[pos]
            word += ch
            pos += 1
    return words


class ShellLex:
    """The Dockerfile shell lexer (buildkit's shell.Lex): quotes, escapes
    and C{$VAR}, C{${VAR}}, C{${VAR:-word}}, C{${VAR:+word}} expansion."""

    def __init__(self, env: Dict[str, str]) -> None:
        self.env = env

    def process_word(self, word: str) -> str:
        text, _ = self._process(word)
        return text

    def process_words(self, word: str) -> List[str]:
        _, words = self._process(word)
        return words

    def _process(self, word: str) -> Tuple[str, List[str]]:
        self.src = word
        self.pos = 0
        return self._stop_on("")

    def _peek(self) -> str:
        return self.src[self.pos] if self.pos < len(self.src) else ""

    def _next(self) -> str:
        ch = self._peek()
        if ch:
            self.pos += 1
        return ch

    def _stop_on(self, stop: str) -> Tuple[str, List[str]]:
        result = []
        words: List[str] = []
        current: List[str] = []
        in_word = False

        def add_char(ch: str, raw: bool) -> None:
            nonlocal in_word, current
            if ch.isspace() and not raw:
                if in_word:
                    words.append("".join(current))
                    current = []
                    in_word = False
                return
            current.append(ch)
            in_word = True

        while self._peek():
            ch = self._peek()
            if stop and ch == stop:
                self._next()
                if in_word:
                    words.append("".join(current))
                return "".join(result), words
            if ch == "'":
                text = self._single_quote()
                result.append(text)
                current.append(text)
                in_word = True
            elif ch == '"':
                text = self._double_quote()
                result.append(text)
                current.append(text)
                in_word = True
            elif ch == "$":
                text = self._dollar()
                result.append(text)
                for c in text:
                    add_char(c, False)
            else:
                ch = self._next()
                if ch == ESCAPE:
                    ch = self._next()
                    if not ch:
                        break
                    add_char(ch, True)
                else:
                    add_char(ch, False)
                result.append(ch)
        if stop:
            raise InvalidParameter(
                "unexpected end of statement while looking for matching %s" % (stop,)
            )
        if in_word:
            words.append("".join(current))
        return "".join(result), words

    def _single_quote(self) -> str:
        self._next()
        out = []
        while True:
            ch = self._next()
            if not ch:
                raise InvalidParameter(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def _double_quote(self) -> str:
        self._next()
        out = []
        while True:
            ch = self._peek()
            if not ch:
                raise InvalidParameter(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self._next()
                return "".join(out)
            if ch == "$":
                out.append(self._dollar())
                continue
            ch = self._next()
            if ch == ESCAPE:
                following = self._peek()
                if not following:
                    continue
                if following in ('"', "$", ESCAPE):
                    ch = self._next()
            out.append(ch)

    def _name(self) -> str:
        ch = self._peek()
        if ch and (ch.isdigit() or ch in "$#*?@!-"):
            return self._next()
        out = []
        while True:
            ch = self._peek()
            if ch and (ch.isalnum() or ch == "_"):
                out.append(self._next())
            else:
                return "".join(out)

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            if not name:
                return "$"
            return self.env.get(name, "")
        self._next()
        ch = self._peek()
        if not ch:
            raise InvalidParameter("syntax error: missing '}'")
        if ch in "{}:":
            raise InvalidParameter("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        if ch == "}":
            return self.env.get(name, "")
        if ch in ("-", "+", "?"):
            word, _ = self._stop_on("}")
            value = self.env.get(name)
            if ch == "-":
                return word if value is None else value
            if ch == "+":
                return "" if value is None else word
            if value is None:
                raise InvalidParameter("%s: %s" % (name, word or "is not allowed to be unset"))
            return value
        if ch == ":":
            modifier = self._next()
            try:
                word, _ = self._stop_on("}")
            except InvalidParameter:
                raise InvalidParameter("syntax error: missing '}'")
            value = self.env.get(name, "")
            if modifier == "+":
                return word if value else ""
            if modifier == "-":
                return value if value else word
            if modifier == "?":
                if not value:
                    raise InvalidParameter("%s: %s" % (name, word or "is not allowed to be empty"))
                return value
            raise InvalidParameter("unsupported modifier (%s) in substitution" % (modifier,))
        raise InvalidParameter("missing ':' in substitution")
