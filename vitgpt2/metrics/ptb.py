"""COCO's caption tokenization in pure Python: the tokens pycocoevalcap's `PTBTokenizer` gives.

pycocoevalcap runs Stanford's PTBTokenizer 3.4.1 (`-preserveLines -lowerCase`) in Java, then drops the tokens in
`REMOVED`. What survives is not "words without punctuation": clitics are split off ("it's" -> `it 's`, "don't" ->
`do n't`), hyphenated words, abbreviations and run-together sentences stay whole (`close-up`, `t.v.`, `ground.a`),
brackets become `-lrb-` and survive (the removal list has them in upper case only), "!!!" survives (only "!" is
removed), and emoji vanish. `tokenize` reproduces that: tests/metrics/test_ptb.py runs both on over 20,000 captions
of every such class and requires identical tokens.

The scanner works as the Java lexer does: at each position it takes the longest match among its rules, the earlier
rule on a tie, where a rule may require what follows (its trailing context) without consuming it.
"""

import functools

import regex

# pycocoevalcap's list of punctuation tokens, removed after tokenising (compared before lower-casing would matter
# only for -LRB- and friends, which the lower-casing turns into tokens that are then kept).
REMOVED = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

# Characters the Java lexer drops without a token, read off the tokenizer itself (every BMP code point in "a X b"):
# controls, spaces, unassigned code points of Java's Unicode version, and, as UTF-16 surrogate pairs, everything
# beyond the BMP (emoji included).
_DELETED_RANGES = (
    "0000-0009 000E-001F 0020 007F 0081-0084 0086-0090 0095 0098-00A0 037F-0383 038B 038D 03A2 0482 0488-0489 0528-0530 0557-0558 0560 "
    "0588 058A-0590 05C8-05CF 05EB-05EF 05F5-05FF 0604-0605 060D-0613 061C-061D 065F 066B-066C 070E 07B2-07BF 07F9 "
    "07FB-07FF 0816-0819 081B-0823 0825-0827 0829-083F 0859-089F 08A1 08AD-08FF 093A-093B 094F 0956-0957 0970 0978 "
    "0980 0984 098D-098E 0991-0992 09A9 09B1 09B3-09B5 09BA-09BB 09C5-09C6 09C9-09CA 09CF-09D6 09D8-09DB 09DE "
    "09E4-09E5 09F2-0A00 0A04 0A0B-0A0E 0A11-0A12 0A29 0A31 0A34 0A37 0A3A-0A3B 0A3D 0A50-0A58 0A5D 0A5F-0A65 "
    "0A70-0A71 0A75-0A80 0A84 0A8E 0A92 0AA9 0AB1 0AB4 0ABA-0ABB 0AD1-0ADF 0AE2-0AE5 0AF0-0B04 0B0D-0B0E 0B11-0B12 "
    "0B29 0B31 0B34 0B3A-0B3C 0B3E-0B5B 0B5E 0B62-0B65 0B70 0B72-0B81 0B84 0B8B-0B8D 0B91 0B96-0B98 0B9B 0B9D "
    "0BA0-0BA2 0BA5-0BA7 0BAB-0BAD 0BBA-0BBD 0BC3-0BC5 0BC9 0BCE-0BCF 0BD1-0BE5 0BF0-0C00 0C04 0C0D 0C11 0C29 0C34 "
    "0C3A-0C3C 0C57 0C5A-0C5F 0C62-0C65 0C70-0C84 0C8D 0C91 0CA9 0CB4 0CBA-0CBC 0CBE-0CDD 0CDF 0CE2-0CE5 0CF0 "
    "0CF3-0D04 0D0D 0D11 0D3B-0D3C 0D45 0D49-0D4D 0D4F-0D5F 0D62-0D65 0D70-0D79 0D80-0D84 0D97-0D99 0DB2 0DBC "
    "0DBE-0DBF 0DC7-0E00 0E3B-0E3E 0E5A-0E80 0E83 0E85-0E86 0E89 0E8B-0E8C 0E8E-0E93 0E98 0EA0 0EA4 0EA6 0EA8-0EA9 "
    "0EAC 0EBE-0EBF 0EC5 0EC7 0ECE-0ECF 0EDA-0EDB 0EE0-0EFF 0F01-0F1F 0F2A-0F3F 0F48 0F6D-0F87 0F8D-0FFF 102B-103E "
    "104A-104F 1056-1059 105E-1060 1062-1064 1067-106D 1071-1074 1082-108D 108F 109A-109F 10C6 10C8-10CC 10CE-10CF "
    "10FB 1249 124E-124F 1257 1259 125E-125F 1289 128E-128F 12B1 12B6-12B7 12BF 12C1 12C6-12C7 12D7 1311 1316-1317 "
    "135B-137F 1390-139F 13F5-1400 166D-166E 1680 169B-169F 16EB-16FF 170D 1712-171F 1732-173F 1752-175F 176D "
    "1771-177F 17B4-17D6 17D8-17DB 17DD-17DF 17EA-180F 181A-181F 1878-187F 18A9 18AB-18AF 18F6-18FF 191D-1945 "
    "196E-196F 1975-197F 19AC-19C0 19C8-19CF 19DA-19FF 1A17-1A1F 1A55-1A7F 1A8A-1A8F 1A9A-1AA6 1AA8-1B04 1B34-1B44 "
    "1B4C-1B4F 1B5A-1B82 1BA1-1BAD 1BE6-1BFF 1C24-1C3F 1C4A-1C4C 1C7E-1CE8 1CED 1CF2-1CF4 1CF7-1CFF 1DC0-1DFF "
    "1F16-1F17 1F1E-1F1F 1F46-1F47 1F4E-1F4F 1F58 1F5A 1F5C 1F5E 1F7E-1F7F 1FB5 1FBF-1FC1 1FC5 1FCD-1FCF 1FD4-1FD5 "
    "1FDC-1FDF 1FED-1FF1 1FF5 1FFD-2012 2024-2025 2027 202A-202F 203C-203D 2043 2045-206F 2072-2073 208F 209D-209F "
    "20A1-20A3 20A5-20AB 20AD-20FF 2150-2152 215F-2182 2185-218F 2C2F 2C5F 2CE5-2CEA 2CEF-2CF1 2CF4-2CFF 2D26 "
    "2D28-2D2C 2D2E-2D2F 2D68-2D6E 2D70-2D7F 2D97-2D9F 2DA7 2DAF 2DB7 2DBF 2DC7 2DCF 2DD7 2DDF-2E2E 2E30-3000 "
    "3003-3004 3007-3011 3013-3030 3036-303A 303D-3040 3097-309C 30A0 3100-3104 312E-3130 318F-319F 31BB-31EF "
    "3200-33FF 4DB6-4DFF 9FCD-9FFF A48D-A4CF A4FE-A4FF A60D-A60F A62C-A63F A66F-A67E A698-A69F A6E6-A716 A720-A721 "
    "A789-A78A A78F A794-A79F A7AB-A7F7 A802 A806 A80B A823-A83F A874-A881 A8B4-A8CF A8DA-A8F1 A8F8-A8FA A8FC-A8FF "
    "A926-A92F A947-A95F A97D-A983 A9B3-A9CE A9DA-A9FF AA29-AA3F AA43 AA4C-AA4F AA5A-AA5F AA77-AA79 AA7B-AA7F AAB0 "
    "AAB2-AAB4 AAB7-AAB8 AABE-AABF AAC1 AAC3-AADA AADE-AADF AAEB-AAF1 AAF5-AB00 AB07-AB08 AB0F-AB10 AB17-AB1F AB27 "
    "AB2F-ABBF ABE3-ABEF ABFA-ABFF D7A4-D7AF D7C7-D7CA D7FC-D7FF D800-F8FF FA6E-FA6F FADA-FAFF FB07-FB12 FB18-FB1C "
    "FB1E FB29 FB37 FB3D FB3F FB42 FB45 FBB2-FBD2 FD3E-FD4F FD90-FD91 FDC8-FDEF FDFC-FE6F FE75 FEFD-FF00 FFBF-FFC1 "
    "FFC8-FFC9 FFD0-FFD1 FFD8-FFD9 FFDD-FFDF FFE2-FFE4 FFE7-FFFF 10000-10FFFF"
)


def _char_class(ranges: str) -> str:
    def escape(code: str) -> str:
        return f"\\U{int(code, 16):08X}"

    parts = []
    for item in ranges.split():
        first, _, last = item.partition("-")
        parts.append(escape(first) + (f"-{escape(last)}" if last else ""))
    return "[" + "".join(parts) + "]"


DELETED = _char_class(_DELETED_RANGES)

_FLAGS = regex.V1
# Letters of words: Unicode letters and marks, a few modifier letters, and the soft hyphen (dropped from the token).
LETTER = r"[[\p{L}\p{M}\u00AD\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF]--" + DELETED + "]"
DIGIT = r"[\p{Nd}--" + DELETED + "]"
LETTER_OR_DIGIT = r"[[\p{L}\p{M}\p{Nd}\u00AD\u02C2-\u02C5\u02D2-\u02DF\u02E5-\u02FF]--" + DELETED + "]"
APOSTROPHE = r"(?:['\u0092\u2019]|&apos;)"
ANY_APOSTROPHE = r"(?:['\u0092\u2019\u0091\u2018\u201B]|&apos;)"
SPACE = r"[ \t\u00A0\u2000-\u200A\u3000]"
CLITIC = APOSTROPHE + r"(?:[msdMSD]|[rR][eE]|[vV][eE]|[lL][lL])"
ACRO = r"[A-Za-z](?:\.[A-Za-z])+"
HYPHEN = r"[-_\u058A\u2010\u2011]"
APOS_PREFIX = r"(?:[dDoOlL]" + ANY_APOSTROPHE + r"(?=" + LETTER_OR_DIGIT + "))"
THING = f"{APOS_PREFIX}?{LETTER_OR_DIGIT}+(?:{HYPHEN}{APOS_PREFIX}?{LETTER_OR_DIGIT}+)*"
HTHING = r"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|" + ACRO + r"\.))+"
NUMBER = "[-+]?(?:" + DIGIT + r"*(?:[.:,\u00AD\u066B\u066C]" + DIGIT + "+)+|" + DIGIT + "+)"


def _caseless_word(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else regex.escape(c) for c in word)


def _caseless(words: str) -> str:
    """`a|bc` -> a pattern matching those words in any case (the Java lexer is caseless outside character classes)."""
    return "(?:" + "|".join(map(_caseless_word, words.split("|"))) + ")"


# Abbreviations that keep their period. Case matters where the lexer's own classes make it matter (Ark, Ill, Mass,
# Miss, Ore, Wash need a capital: "ill." ends a sentence).
_MONTHS_DAYS = "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|mon|tue|tues|wed|thu|thurs|fri"
_STATES = "ala|ariz|calif|colo|conn|dak|del|fla|ga|ind|kan|kans|ky|la|md|mich|minn|mo|mont|neb|nev|okla|pa|penn|tenn|tex|va|vt|wis|wisc|wyo"
_COMPANIES = "inc|co|cos|corp|pty|ptys|ppty|pptys|ltd|plc|bancorp|dept|bhd|assn|univ|intl|sys"
_AFTER_NAMES = "jr|sr|bros|blvd|rd|esq"
_COUNTED = "ph|tel|est|ext|sq|ft"
_TITLES = (
    "mr|mrs|ms|dr|drs|prof|profs|sen|sens|rep|reps|atty|attys|lt|col|gen|messrs|gov|govs|adm|rev|maj|sgt|cpl|pvt|mt|"
    "capt|st|ste|ave|pres|lieut|hon|brig|cmdr|comdr|pfc|spc|supt|supts|det"
)
ABBREVIATION = (
    "(?:"
    + _caseless("|".join([_MONTHS_DAYS, _STATES, _COMPANIES, _AFTER_NAMES, _COUNTED, "etc|al|seq", _TITLES]))
    + r"|A[rR][kK]|I[lL][lL]|M[aA][sS][sS]|M[iI][sS][sS]|O[rR][eE]|W[aA][sS][hH]"
    + r"|"
    + _caseless("ed.d|ph.d|vs|alex|wm|jos|cie|a.k.a|cf|treas|invt|elec|natl|mfg|mtg")
    + "|"
    + ACRO
    + r"|[A-Za-z])\."
)

_SPACE_OR_NEWLINE = r"[ \t\u00A0\u2000-\u200A\u3000\n]"
_OPENERS = (
    "About According Additionally After An A As At But Earlier He Her Here However If In It Last Many More Mr. Ms. Now "
    "Once One Other Our She Since So Some Such That The Then There These They This We When While What Yet You"
)
_TAG = r"<\/?[A-Za-z!][^>]*>"  # SGML-like tags, which the lexer keeps whole
# After spaces or line breaks: a word that starts sentences, capitalised, before a space or line break; or a tag.
_SENTENCE_OPENER = (
    f"{_SPACE_OR_NEWLINE}+(?:(?:"
    + "|".join(word[0] + _caseless_word(word[1:]) for word in _OPENERS.split())  # a capital, then any case
    + f")(?={_SPACE_OR_NEWLINE})|{_TAG})"
)
_ASSIMILATIONS = (("gon", "na"), ("wan", "na"), ("got", "ta"), ("lem", "me"), ("gim", "me"))
_APOSTROPHE_WORD = (
    f"{APOSTROPHE}[nN]{APOSTROPHE}?|[lLdDjJ]{APOSTROPHE}|"
    + _caseless("dunkin|somethin|ol")
    + APOSTROPHE
    + f"|{APOSTROPHE}[eE][mM]|[A-HJ-XZn]{ANY_APOSTROPHE}{LETTER}{{2}}{LETTER}*|{APOSTROPHE}[2-9]0[sS]|"
    + f"{APOSTROPHE}[tT][iI][lL][lL]?|{LETTER}+[aeiouyAEIOUY]{ANY_APOSTROPHE}[aeiouA-Z]{LETTER}*|{APOSTROPHE}"
    + _caseless("cause")
    + "|"
    + _caseless("cont'd.|cont'd|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l")
)
_LIKELY_URL = (
    r"(?:(?:www\.(?:[^ \t\n\f\r\"<>|.!?(){},]+\.)+[a-zA-Z]{2,4})|(?:(?:[^ \t\n\f\r\"`'<>|.!?(){},\-_$]+\.)+"
    r"(?:com|net|org|edu)))(?:\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-])?"
)
NUMBER_ABBREVIATION = _caseless("no.|nos.|prop.")  # abbreviations only before a number
_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3"}
_CURRENCY = {"\u00a2": "cents", "\u00a3": "#", "\u0080": "$", "\u00a4": "$", "\u20a0": "$", "\u20ac": "$"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}


def _same(text):
    return [text]


def _without_soft_hyphens(text):
    return [text.replace("\u00ad", "")]


def _nbsp(text):
    return [text.replace(" ", "\u00a0")]


def _phone(text):
    return [text.replace(" ", "\u00a0").replace("(", "-LRB-").replace(")", "-RRB-")]


def _dashes(text):
    return ["--" if 3 <= len(text) <= 4 else text]


def _nothing(text):
    return []


_QUOTE_MARKS = str.maketrans(
    {"\u2018": "`", "\u201b": "`", "\u2039": "`", "\u0091": "`", "\u2019": "'", "\u203a": "'", "\u0092": "'",
     "\u201c": "``", "\u00ab": "``", "\u0093": "``", "\u201d": "''", "\u00bb": "''", "\u0094": "''", '"': "''"}
)  # fmt: skip


def _quote(text):
    """Quotes as PTB writes them (`` '' ` '), which is also how clitics written with a curly apostrophe come out."""
    return [text.replace("&quot;", '"').replace("&apos;", "'").translate(_QUOTE_MARKS)]


def _opening_quote(text):
    return ["`"]


def _smiley(text):
    return [text.replace("(", "-LRB-").replace(")", "-RRB-")]


def _amp(text):
    return [regex.sub("(?i)&amp;", "&", text)]


def _currency(text):
    return [_CURRENCY.get(text, text)]


def _rule(pattern: str, emit=_same, then: str | None = None):
    return regex.compile(pattern, _FLAGS), (regex.compile(then, _FLAGS) if then else None), emit


# The rules, in the lexer's priority order (the longest match wins; on a tie the earlier rule).
_RULES = [
    _rule(_caseless("can"), then=_caseless("not")),
    _rule(_TAG),
    _rule(r"&(?:MD|mdash|ndash);|[\u0096\u0097\u2013\u2014\u2015]", lambda text: ["--"]),
    _rule(_caseless("&amp;"), lambda text: ["&"]),
    _rule(r"&(?:HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+);"),
    # "gonna" -> gon na, "'tis" -> 't is: split where the word ends there
    *(_rule(_caseless(head), then=_caseless(tail) + f"(?!{LETTER})") for head, tail in _ASSIMILATIONS),
    _rule(APOSTROPHE + "[tT]", then=_caseless("is|was") + f"(?!{LETTER})"),
    _rule(LETTER + "+", _without_soft_hyphens, then=CLITIC),
    _rule(r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*", _without_soft_hyphens, then="[nN]" + ANY_APOSTROPHE + "[tT]"),
    _rule(LETTER + "+", _without_soft_hyphens),
    _rule(f"{LETTER}+(?:[.!?]{LETTER}+|@{LETTER_OR_DIGIT}+)+"),  # run together: "ground.A", "wait!really"
    _rule(f"[#@]{LETTER}+"),  # hashtags and mentions
    _rule(r"[<>]?[:;=][-o*']?[()DPdpO\\{@|\[\]]", _smiley),
    _rule(_APOSTROPHE_WORD),
    _rule("[yY]" + APOSTROPHE, then=LETTER),
    _rule(_caseless("http") + "[sS]?" + r":\/\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-]"),
    _rule(_LIKELY_URL),
    _rule(r"[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0]*@(?:[^ \t\n\f\r\"<>|().\u00A0]+\.)+[^ \t\n\f\r\"<>|().\u00A0]+"),
    _rule(CLITIC, _quote, then="[^A-Za-z]|$"),
    _rule("[nN]" + ANY_APOSTROPHE + "[tT]", _quote),
    _rule(DIGIT + "{1,2}[-/]" + DIGIT + "{1,2}[-/]" + DIGIT + "{2,4}"),
    _rule(NUMBER, _without_soft_hyphens),
    _rule(r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)"),
    _rule("(?:" + DIGIT + "{1,4}[- \u00a0])?" + DIGIT + "{1,4}(?:\\\\?/|\u2044)" + DIGIT + "{1,4}", _nbsp),
    _rule("[\u00bc\u00bd\u00be\u2153\u2154]", lambda text: [_FRACTIONS[text]]),
    _rule(r"[\u2155-\u215E]"),
    _rule(
        r"-(?:RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|"
        + _caseless("pro-|anti-|s&p-500|s&amp;p-500|s&ls|s&amp;ls")
        + "|"
        + "[cC][aA][pP]"
        + APOSTROPHE
        + "[nN]|[cC]"
        + APOSTROPHE
        + _caseless("est"),
        _amp,
    ),
    _rule(r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"),
    _rule(r"[A-Z]*\$|#"),
    _rule("[\u00a2\u00a3\u00a4\u00a5\u0080\u20a0\u20ac\u060b\u0e3f\u20a4\uffe0\uffe1\uffe5\uffe6]", _currency),
    # "b. The": a single letter before a word that opens sentences gives its period to a token of its own
    _rule("[A-Za-z]", then=r"\." + _SENTENCE_OPENER),
    _rule(ABBREVIATION),
    _rule(NUMBER_ABBREVIATION, then=r"[ \t\n]?[0-9]"),  # "No. 5" keeps its period, "no." ends a sentence
    _rule("(?:" + ABBREVIATION[3:-3] + ")", then=SPACE),
    _rule(ACRO, then=f"{SPACE}|[\\n]|$"),
    _rule(APOSTROPHE + "[0-9][0-9]", then=f"{SPACE}|$"),
    _rule(LETTER + r"+\.", _without_soft_hyphens, then="[,;:]"),
    _rule(
        r"(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[- \u00A0])?[0-9]{2,4}[- \u00A0])[0-9]{3,4}[- \u00A0]?[0-9]{3,5}",
        _phone,
    ),
    _rule(r'"|&quot;', _quote),
    _rule(r"[+%&\u2030\u2031~^|\\]"),
    _rule(r"[(){}\[\]]", lambda text: [_BRACKETS[text]]),
    _rule(_caseless("&lt;|&gt;"), lambda text: ["<" if text.lower() == "&lt;" else ">"]),
    _rule(r"-+", _dashes),
    _rule(r"\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026]", lambda text: ["..."]),
    _rule(r"@+|#+|_+"),
    _rule(r"\*+|(?:\\\*){1,3}"),
    _rule(r"[,;:]"),
    _rule(r"[?!]+"),
    _rule(r"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA]"),
    _rule(r"[=/]"),
    _rule(HTHING + r"\.", _without_soft_hyphens, then="[,;:]"),
    _rule(HTHING, _without_soft_hyphens),
    _rule(THING + r"\.", then="[,;:]"),
    _rule(THING),
    _rule(r"[A-Z]+(?:(?:[+&]|&amp;)[A-Z]+)+(?:\.(?=[,;:]))?", _amp),
    _rule("'", _opening_quote, then=r"[A-Za-z][^ \t\n\r\u00A0]"),
    _rule(CLITIC, _quote),
    _rule(
        APOSTROPHE
        + "|''|[`\u2018\u2019\u201a\u201b\u201c\u201d\u0091\u0092\u0093\u0094\u201e\u201f\u2039\u203a\u00ab\u00bb]{1,2}",
        _quote,
    ),
    _rule(DELETED + "+", _nothing),
    _rule(r"(?s:.)", _same),  # any other character: a symbol of its own
]


def _scan(text: str, position: int, end: int) -> tuple[list[str], int]:
    """Tokens from `position` on until `end` is reached (a rule may consume past it), and where scanning stopped."""
    tokens = []
    while position < end:
        best_total, best = 0, None
        for pattern, then, emit in _RULES:
            match = pattern.match(text, position)
            if match is None or match.end() == position:
                continue
            total = match.end()
            if then is not None:
                follow = then.match(text, total)
                if follow is None:
                    continue
                total = follow.end()
            if total > best_total:
                best_total, best = total, (match.end(), emit)
        consumed, emit = best
        tokens += emit(text[position:consumed])
        position = consumed
    return tokens, position


@functools.lru_cache(maxsize=1 << 17)
def _chunk_tokens(chunk: str, follower: str) -> tuple[str, ...]:
    return tuple(_scan(chunk + follower, 0, len(chunk))[0])


def _lex(text: str, end: int) -> list[str]:
    """Tokens of `text[:end]`; what follows `end` is context only (the start of the next line).

    Text between spaces ("chunks") is tokenized once and remembered, with the character after it, unless a rule could
    reach across the space: tags, numbers (fractions, phone numbers), and a period before more dots or a capital."""
    tokens, position = [], 0
    while position < end:
        space = _SPACES.match(text, position)
        if space is not None:
            position = space.end()
            continue
        chunk_end = _CHUNK.match(text, position, end).end()
        chunk = text[position:chunk_end]
        if _self_contained(chunk, text, chunk_end, end):
            tokens += _chunk_tokens(chunk, text[chunk_end : chunk_end + 5] if chunk_end >= end else text[chunk_end])
            position = chunk_end
        else:
            scanned, position = _scan(text, position, chunk_end)
            tokens += scanned
    return tokens


def _self_contained(chunk: str, text: str, chunk_end: int, end: int) -> bool:
    if _REACHES_OUT.search(chunk):
        return False
    return not chunk.endswith(".") or chunk_end >= end or _LOWER_START.match(text, chunk_end + 1) is not None


_SPACES = regex.compile(SPACE + "+")
_CHUNK = regex.compile(r"[^ \t\u00A0\u2000-\u200A\u3000]+")
_REACHES_OUT = regex.compile(r"[<0-9]|\p{Nd}")
_LOWER_START = regex.compile("[a-z]")
_REMOVED_LOWER = frozenset(token for token in REMOVED if token.lower() == token)
_OPENS_SENTENCE = regex.compile(_SENTENCE_OPENER, _FLAGS)


@functools.lru_cache(maxsize=1 << 16)
def _tokenize(line: str, follow: str) -> tuple[str, ...]:
    """`follow` stands for what starts the next line: "\nThe " (a sentence opener), "\n1" (a digit) or "\n#"."""
    plain = _plain_words(line)
    if plain is not None:
        return plain
    text = line + follow
    return tuple(token for token in (t.lower() for t in _lex(text, len(line))) if token not in _REMOVED_LOWER)


# Most captions are words and spaces, perhaps ending in a period: "A man riding a wave."
_PLAIN_LINE = regex.compile(r"[ \t]*[A-Za-z]+(?:[ \t]+[A-Za-z]+)*\.?[ \t]*")
_KEEPS_PERIOD = regex.compile(f"{ABBREVIATION}|{NUMBER_ABBREVIATION}", _FLAGS)
_SPLIT_WORDS = frozenset(["cannot", *(head + tail for head, tail in _ASSIMILATIONS)])  # plain, yet split


def _plain_words(line: str) -> tuple[str, ...] | None:
    """The tokens of a caption of plain words, or None where the lexer must decide: a word it splits ("cannot"), or a
    last word whose period may belong to it ("St.", "b.")."""
    if _PLAIN_LINE.fullmatch(line) is None:
        return None
    words = line.split()
    if words[-1].endswith("."):
        last = words[-1]
        if len(last) == 2 or _KEEPS_PERIOD.fullmatch(last):
            return None
        words[-1] = last[:-1]
    tokens = tuple(word.lower() for word in words)
    return None if _SPLIT_WORDS.intersection(tokens) else tokens


def _line(caption) -> str:
    # pycocoevalcap writes each caption on a line of its own, line breaks replaced by spaces. The lexer also breaks
    # lines at \r, \v, \f, U+0085, U+2028 and U+2029, which pycocoevalcap leaves in, misaligning every later caption;
    # here they are spaces.
    return _LINE_BREAKS.sub(" ", "" if caption is None else str(caption))


_LINE_BREAKS = regex.compile("[\n\r\v\f\u0085\u2028\u2029]")


def tokenize(caption: str, next_caption: str | None = None) -> list[str]:
    """The tokens COCO's evaluation scores for `caption`, lower-cased, punctuation removed.

    pycocoevalcap tokenizes all captions as the lines of one file, and the Java lexer lets the next line decide one
    thing: a last word that is a single letter with a period ("b.") loses the period when the next line starts with a
    word that opens sentences ("The", "A", ...). `next_caption` is that line; `tokenize_all` does this for a list."""
    return tokenize_all([caption] if next_caption is None else [caption, next_caption])[0]


def tokenize_all(captions) -> list[list[str]]:
    """`tokenize` of each caption, in order, as pycocoevalcap tokenizes them: as the lines of one file."""
    lines = [_line(caption) for caption in captions]
    return [list(_tokenize(line, _what_follows(lines, index))) for index, line in enumerate(lines)]


def _what_follows(lines: list[str], index: int) -> str:
    """What of the lines after `index` the lexer reads: a sentence opener ("\nThe "), a digit ("\n1"), or neither."""
    if index + 1 >= len(lines):
        return "\n#"  # the end of the file
    after = lines[index + 1 : index + 2 + _empty_run(lines, index + 1)]
    if _OPENS_SENTENCE.match("\n" + "\n".join(after) + ("\n" if index + 1 + len(after) < len(lines) else "")):
        return "\nThe "
    return "\n1" if lines[index + 1][:1] in _DIGITS else "\n#"


_DIGITS = frozenset("0123456789")


def _empty_run(lines: list[str], start: int) -> int:
    """How many empty lines follow from `start` (line breaks only: the lexer looks past them)."""
    count = 0
    while start + count < len(lines) and not lines[start + count]:
        count += 1
    return count


def normalize_caption(text: str) -> str:
    """The caption as COCO's evaluation scores it: its PTB tokens, lower-cased, punctuation removed, space-separated.

    "A man's red T-shirt." -> "a man 's red t-shirt"."""
    return " ".join(tokenize(text))
