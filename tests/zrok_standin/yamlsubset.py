"""Parse the block-YAML subset that the roles write for the zrok stand-in.

The stand-in runs on lab hosts with the Python standard library only, so it
cannot use PyYAML. This parser reads what ctrl.yml, frontend.yml and the
OpenZiti configs of a self-hosted instance contain: nested mappings by
indentation, block sequences (`- item`, `- key: value`), plain, single- and
double-quoted scalars, flow sequences and mappings of scalars (`[a, b]`,
`{}`), comments and `---`. Anchors, tags, multi-line scalars (`|`, `>`) and
nested flow collections raise YamlSubsetError naming the line.
"""

import json
import re

_INT = re.compile(r"^[-+]?[0-9]+$")
_FLOAT = re.compile(r"^[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$")


class YamlSubsetError(ValueError):
    """Raised for YAML outside the subset this stand-in understands."""


def loads(text):
    """Parse a YAML document and return its top-level value (dict, list or scalar)."""
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw.strip() in ("---", "..."):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise YamlSubsetError(f"line {number}: tabs are not allowed in YAML indentation")
        content = _strip_comment(raw).rstrip()
        if not content.strip():
            continue
        indent = len(content) - len(content.lstrip(" "))
        lines.append((number, indent, content.strip()))
    if not lines:
        return None
    value, position = _parse_block(lines, 0, lines[0][1])
    if position != len(lines):
        number = lines[position][0]
        raise YamlSubsetError(f"line {number}: unexpected indentation")
    return value


def load_file(path):
    """Read and parse the YAML file at `path`."""
    with open(path, encoding="utf-8") as handle:
        return loads(handle.read())


def _strip_comment(line):
    # A `#` starts a comment at the line start or after whitespace, outside quotes.
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
        elif char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    return line


def _parse_block(lines, position, indent):
    if lines[position][2].startswith("- ") or lines[position][2] == "-":
        return _parse_sequence(lines, position, indent)
    return _parse_mapping(lines, position, indent)


def _parse_sequence(lines, position, indent):
    items = []
    while position < len(lines):
        number, line_indent, content = lines[position]
        is_item = content.startswith("- ") or content == "-"
        if line_indent < indent or (line_indent == indent and not is_item):
            break
        if line_indent > indent:
            raise YamlSubsetError(f"line {number}: expected a sequence item at indentation {indent}")
        rest = content[1:].strip()
        if not rest:
            position += 1
            if position < len(lines) and lines[position][1] > indent:
                value, position = _parse_block(lines, position, lines[position][1])
            else:
                value = None
            items.append(value)
            continue
        key, separator, _ = _split_key(rest)
        if separator:
            # `- key: value` opens a mapping whose keys sit two columns further in.
            item_indent = line_indent + (len(content) - len(rest))
            lines[position] = (number, item_indent, rest)
            value, position = _parse_mapping(lines, position, item_indent)
            items.append(value)
        else:
            items.append(_parse_scalar(rest, number))
            position += 1
    return items, position


def _parse_mapping(lines, position, indent):
    mapping = {}
    while position < len(lines):
        number, line_indent, content = lines[position]
        if line_indent < indent:
            break
        if line_indent > indent:
            raise YamlSubsetError(f"line {number}: unexpected indentation")
        if content.startswith("- "):
            break
        key, separator, rest = _split_key(content)
        if not separator:
            raise YamlSubsetError(f"line {number}: expected 'key: value', got {content!r}")
        position += 1
        if rest:
            mapping[key] = _parse_scalar(rest, number)
        elif position < len(lines) and lines[position][1] > indent:
            mapping[key], position = _parse_block(lines, position, lines[position][1])
        elif (
            position < len(lines)
            and lines[position][1] == indent
            and lines[position][2].startswith("- ")
        ):
            # A sequence may sit at the same indentation as its key.
            mapping[key], position = _parse_sequence(lines, position, indent)
        else:
            mapping[key] = None
    return mapping, position


def _split_key(content):
    if content[0] in ("'", '"'):
        end = content.find(content[0], 1)
        if end > 0 and content[end + 1 : end + 2] == ":":
            rest = content[end + 2 :]
            if not rest or rest[0] == " ":
                return content[1:end], ":", rest.strip()
        return content, "", ""
    match = re.match(r"^([^:\[\]{},]+?):(\s+|$)", content)
    if not match:
        return content, "", ""
    return match.group(1).strip(), ":", content[match.end() :].strip()


def _parse_scalar(text, number):
    if text[0] in ("&", "*", "!", "|", ">"):
        raise YamlSubsetError(f"line {number}: anchors, tags and block scalars are not supported")
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlSubsetError(f"line {number}: unterminated double-quoted string")
        return json.loads(text)
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YamlSubsetError(f"line {number}: unterminated single-quoted string")
        return text[1:-1].replace("''", "'")
    if text.startswith("["):
        if not text.endswith("]"):
            raise YamlSubsetError(f"line {number}: unterminated flow sequence")
        inner = text[1:-1].strip()
        return [_parse_scalar(part.strip(), number) for part in _split_flow(inner, number)] if inner else []
    if text.startswith("{"):
        if not text.endswith("}"):
            raise YamlSubsetError(f"line {number}: unterminated flow mapping")
        inner = text[1:-1].strip()
        result = {}
        for part in _split_flow(inner, number) if inner else []:
            key, separator, rest = _split_key(part.strip())
            if not separator:
                raise YamlSubsetError(f"line {number}: expected 'key: value' in flow mapping")
            result[key] = _parse_scalar(rest, number) if rest else None
        return result
    return _plain(text)


def _split_flow(inner, number):
    parts, current, quote = [], "", None
    for char in inner:
        if quote:
            current += char
            if char == quote:
                quote = None
            continue
        if char in ("'", '"'):
            quote = char
        elif char in "[{":
            raise YamlSubsetError(f"line {number}: nested flow collections are not supported")
        elif char == ",":
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _plain(text):
    lowered = text.lower()
    if lowered in ("null", "~"):
        return None
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text
