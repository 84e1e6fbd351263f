"""What a Hub access token looks like, for the model card and the upload to keep every token out."""

import re

# Hub tokens are "hf_" and 34 letters or digits; 30 or more also catches older and shortened ones.
HUB_TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{30,}")
HUB_TOKEN_BYTES_PATTERN = re.compile(HUB_TOKEN_PATTERN.pattern.encode())
