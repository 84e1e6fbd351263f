"""The text every word-splitting metric sees."""

# The tokens pycocoevalcap's PTBTokenizer drops after tokenising ('' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - --
# ... ;), as the characters they come from, plus the Unicode quotes, dashes and ellipsis PTB maps onto them.
PTB_PUNCTUATION = "'\"`(){}.?!,:;-" + "\u2018\u2019\u201c\u201d\u2013\u2014\u2026"
_PUNCTUATION_TABLE = str.maketrans(dict.fromkeys(PTB_PUNCTUATION, " "))


def normalize_caption(text: str) -> str:
    """Lower-case, replace PTB punctuation by spaces, collapse whitespace: COCO eval's text, without Java.

    "A man's red T-shirt." -> "a man s red t shirt". Punctuation becomes a space rather than vanishing because
    PTB splits it off as its own token ("man 's"), so words never fuse.
    """
    return " ".join(str(text).lower().translate(_PUNCTUATION_TABLE).split())
