"""Writes each statement of the ksqlDB conformance corpus as one fuzz seed file."""
import hashlib
import json
import pathlib
import sys


def strip_line_comments(text):
    out, in_string, i = [], False, 0
    while i < len(text):
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\":
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
        elif c == '"':
            in_string = True
            out.append(c)
        elif text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


source, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
target.mkdir(parents=True, exist_ok=True)
for path in sorted(source.glob("*/*.json")):
    for case in json.loads(strip_line_comments(path.read_text()))["tests"]:
        for statement in case.get("statements", []):
            data = statement.replace("{FORMAT}", "JSON").encode()
            (target / hashlib.sha1(data).hexdigest()).write_bytes(data)
