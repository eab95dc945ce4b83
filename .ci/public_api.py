#!/usr/bin/env python3
"""The crate's public API as a sorted text listing, read from rustdoc's HTML output.

Run after `cargo doc --no-deps --all-features`. It reads the item list rustdoc writes
to target/doc/tower_oauth/all.html and, for every item, the signature on the item's
page: the declaration (struct fields, enum variants, trait items, function
signatures), the inherent impls with their methods, associated constants and types,
and the headers of the trait impls (auto traits included; blanket impls left out).
One line per item, impl or method, whitespace normalised, sorted: an API change is a
visible diff of api/public-api.txt in review.

    python3 .ci/public_api.py                    # print the listing
    python3 .ci/public_api.py --write FILE       # update the committed listing
    python3 .ci/public_api.py --check FILE       # fail with a unified diff on change

Standard library only. The HTML layout is rustdoc's, which changes between Rust
versions now and then: a new toolchain may change the listing without an API change.
"""

import argparse
import difflib
import html
import os
import re
import sys

CRATE = "tower_oauth"
DOC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "doc", CRATE)

KINDS = {
    "struct": "struct",
    "enum": "enum",
    "trait": "trait",
    "fn": "fn",
    "type": "type",
    "constant": "const",
    "static": "static",
    "macro": "macro",
    "union": "union",
    "traitalias": "trait alias",
    "attr": "attr",
    "derive": "derive",
}

TAG = re.compile(r"<[^>]*>")
# Rustdoc renders these bits of UI inside code blocks: they are not part of the API.
UI_NOISE = re.compile(
    r'<(?:a|span) class="(?:src|rightside|anchor|since)[^"]*"[^>]*>.*?</(?:a|span)>'
    r"|<summary[^>]*>.*?</summary>",
    re.S,
)


def text(fragment):
    """The text of an HTML fragment, whitespace normalised to single spaces."""
    fragment = re.sub(r"<br\s*/?>|<div[^>]*>|</div>", " ", UI_NOISE.sub("", fragment))
    fragment = html.unescape(TAG.sub("", fragment)).replace("\xa0", " ")
    fragment = re.sub(r"\s+", " ", fragment).strip()
    # The code-attribute div runs into the next token: `#[non_exhaustive]pub`.
    fragment = re.sub(r"\]\s*(?=pub |impl|unsafe|struct |enum |trait |fn |type |const )", "] ", fragment)
    fragment = re.sub(r"\s+([,;)>\]])", r"\1", fragment)
    fragment = re.sub(r"([(<\[])\s+", r"\1", fragment)
    return fragment


def items(doc_dir):
    """(kind, path, page) of every item in all.html."""
    try:
        with open(os.path.join(doc_dir, "all.html"), encoding="utf-8") as f:
            page = f.read()
    except FileNotFoundError:
        raise SystemExit(
            f"public_api.py: no {os.path.join(doc_dir, 'all.html')}: run"
            " `cargo doc --no-deps --all-features` first"
        ) from None
    found = []
    for href in re.findall(r'<li><a href="([^"#]+\.html)"', page):
        parts = href.split("/")
        kind, _, name = parts[-1][: -len(".html")].partition(".")
        if kind not in KINDS:
            raise SystemExit(f"public_api.py: unknown item kind in all.html: {href}")
        path = "::".join([CRATE, *parts[:-1], name])
        found.append((KINDS[kind], path, os.path.join(doc_dir, *parts)))
    if not found:
        raise SystemExit("public_api.py: all.html lists no items (run cargo doc first)")
    return found


def section(page, ident):
    """The HTML of the `<div id=ident>` list of impls, up to the next section header."""
    start = page.find(f'<div id="{ident}"')
    if start < 0:
        return ""
    end = page.find('<h2 id="', start)
    return page[start : end if end >= 0 else len(page)]


# Marker traits that only a nightly toolchain can name, and that rustdoc versions add
# and remove (Freeze, UnsafeUnpin, StructuralPartialEq): not part of the stable API.
UNSTABLE_MARKER = re.compile(r"(?:unsafe )?impl(?:<[^>]*>)? !?(?:Freeze|UnsafeUnpin|StructuralPartialEq) for ")
CODE_HEADER = re.compile(r'<h([34]) class="code-header">(.*?)</h\1>', re.S)


def impl_lines(page, ident, members):
    """Lines for the impls of one section: each impl's header, and each member's
    signature after it when `members` is set."""
    out = []
    header = None
    for level, fragment in CODE_HEADER.findall(section(page, ident)):
        if level == "3":
            header = text(fragment)
            if UNSTABLE_MARKER.match(header):
                header = None
                continue
            out.append(header)
        elif members and header is not None:
            out.append(f"{header} :: {text(fragment)}")
    return out


def describe(kind, path, file):
    with open(file, encoding="utf-8") as f:
        page = f.read()
    prefix = f"{kind} {path}"
    lines = []
    decl = re.search(r'<pre class="rust item-decl">(.*?)</pre>', page, re.S)
    lines.append(f"{prefix} = {text(decl.group(1))}" if decl else prefix)
    # The item's own feature gate, not those of its impls further down.
    head = page[: page.find('<h2 id="')] if '<h2 id="' in page else page
    feature = re.search(r'<div class="stab portability">(.*?)</div>', head, re.S)
    if feature:
        lines.append(f"{prefix} !! {text(feature.group(1))}")
    for ident, members in (
        ("implementations-list", True),
        ("trait-implementations-list", False),
        ("synthetic-implementations-list", False),
    ):
        lines.extend(f"{prefix} :: {line}" for line in impl_lines(page, ident, members))
    return lines


def listing(doc_dir):
    lines = []
    for kind, path, file in items(doc_dir):
        lines.extend(describe(kind, path, file))
    # Impls of one type may repeat a header (two `impl<B> Foo<B>` blocks): keep both,
    # sorted, so that the listing is stable.
    return "".join(line + "\n" for line in sorted(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--check", metavar="FILE", help="compare with FILE; fail with a diff")
    group.add_argument("--write", metavar="FILE", help="write the listing to FILE")
    parser.add_argument("--doc-dir", default=DOC_DIR, help="rustdoc output of the crate")
    args = parser.parse_args()

    current = listing(args.doc_dir)
    if args.write:
        os.makedirs(os.path.dirname(os.path.abspath(args.write)), exist_ok=True)
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(current)
        print(f"public_api.py: wrote {current.count(chr(10))} lines to {args.write}")
    elif args.check:
        try:
            with open(args.check, encoding="utf-8") as f:
                committed = f.read()
        except FileNotFoundError:
            committed = ""
        if committed != current:
            sys.stdout.writelines(
                difflib.unified_diff(
                    committed.splitlines(True),
                    current.splitlines(True),
                    fromfile=f"{args.check} (committed)",
                    tofile="public API (cargo doc)",
                )
            )
            print(
                f"\npublic_api.py: the public API differs from {args.check}. If the change is"
                f" meant, update the listing and commit it:\n"
                f"    cargo doc --no-deps --all-features && python3 .ci/public_api.py --write {args.check}",
                file=sys.stderr,
            )
            return 1
        print(f"public_api.py: the public API matches {args.check}")
    else:
        sys.stdout.write(current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
