"""The message model: a message is its bytes (RFC 5322 / MIME).

- `compose.parse_message` renders a message from the API's fields, once, at accept;
- `submission.submitted` takes a message submitted as MIME (SMTP) as written,
  with only the changes RFC 6409 §8 allows;
- `reading` is the one MIME reader: what pages, search and downloads need;
- `addresses` parses address lists (names, groups, IDNA, SMTPUTF8);
- `headers` says which headers a client may set and folds each by its kind;
- `text` is the one check for control characters and broken Unicode.
"""

from .addresses import check_envelope_address, envelope, flatten, parse_address, parse_address_list
from .compose import parse_message
from .filenames import safe_filename
from .model import DEFAULT_MAX_SIZE, MAX_RECIPIENTS, Message, new_message_id
from .reading import Content, Part, read_content, read_part, read_summary
from .submission import submitted

__all__ = [
    "DEFAULT_MAX_SIZE", "MAX_RECIPIENTS", "Content", "Message", "Part",
    "check_envelope_address", "envelope", "flatten", "new_message_id", "parse_address",
    "parse_address_list", "parse_message", "read_content", "read_part", "read_summary",
    "safe_filename", "submitted",
]
