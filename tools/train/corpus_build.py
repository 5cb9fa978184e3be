#!/usr/bin/env python3
"""Cleans, de-duplicates and splits the raw text that make_corpus.sh extracted.

    python3 tools/train/corpus_build.py --raw .train-data/raw --out .train-data \
        --manifest tools/train/CORPUS.md

Each raw file is a document of one kind (dictionary, man page, reStructuredText, HTML,
info, plain). It is converted to plain text, split into paragraphs, cleaned (markup and
control characters stripped, hard-wrapped prose re-flowed), paragraphs of 40+ characters
already seen anywhere are dropped (hash of the lower-cased, whitespace-collapsed text),
and the document is cut into chunks of at most 16 KB at paragraph boundaries. A chunk goes
to held-out when a hash of its name falls in 2 of 100 buckets. Chunks are written in a
fixed order, separated by a line holding only U+001E (record separator), xz-compressed.
Standard library only; deterministic.
"""
import argparse
import hashlib
import html.parser
import json
import lzma
import os
import re
import sys

# source dir -> (kind, description, Debian packages, cap in MB of cleaned text or None)
SOURCES = {
    "dict/gcide":  ("dict", "GNU Collaborative International Dictionary of English (Webster 1913 based)", "dict-gcide", 14),
    "dict/wn":     ("dict", "WordNet 3.0 definitions and examples", "dict-wn", 8),
    "dict/foldoc": ("dict", "Free On-line Dictionary of Computing", "dict-foldoc", None),
    "dict/jargon": ("dict", "The Jargon File", "dict-jargon", None),
    "dict/devil":  ("dict", "Ambrose Bierce, The Devil's Dictionary", "dict-devil", None),
    "fortunes":    ("plain", "fortune cookies (quotations, humour, literature)", "fortunes, fortunes-min", None),
    "man":         ("man", "manual pages, sections 1, 5, 7, 8 (every third page by name), as rendered by man(1)", "manpages, manpages-dev and every installed package", 22),
    "info":        ("info", "GNU info manuals (bash, coreutils, sed, grep, gnupg, standards, ...)", "info, bash-doc, gnu-standards, ...", None),
    "perl":        ("plain", "Perl documentation (pod2text)", "perl-doc", None),
    "python":      ("rst", "Python 3.11 documentation sources", "python3.11-doc", None),
    "linux":       ("rst", "Linux kernel documentation (English; translations excluded)", "linux-doc-6.1", 14),
    "devref":      ("rst", "Debian Developer's Reference", "developers-reference", None),
    "html":        ("html", "Debian Reference, Debian Administrator's Handbook (en-US), Debian New Maintainers' Guide", "debian-reference-en, debian-handbook, maint-guide", None),
    "licenses":    ("plain", "licence texts in /usr/share/common-licenses", "base-files", None),
    "readme":      ("plain", "README files of installed packages", "(installed packages)", None),
}
CHUNK = 16000
CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff]")


class HTMLText(html.parser.HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table",
             "dt", "dd", "blockquote", "section", "ul", "ol", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head", "nav"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "head", "nav"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.out.append("\n\n")

    def handle_data(self, data):
        if not self.skip:
            self.out.append(data)


def html_to_text(s):
    p = HTMLText()
    p.feed(s)
    t = "".join(p.out)
    # inside a block, HTML newlines are spaces
    return "\n\n".join(re.sub(r"\s*\n\s*", " ", b).strip() for b in re.split(r"\n\s*\n", t))


RST_ROLE = re.compile(r":[a-zA-Z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")


def rst_to_text(s):
    lines, out, in_directive = s.split("\n"), [], False
    for ln in lines:
        if re.match(r"^\s*\.\. ", ln):
            in_directive = not re.match(r"^\s*\.\. (note|warning|seealso|versionadded|versionchanged|deprecated)::", ln)
            if not in_directive:
                rest = re.sub(r"^\s*\.\. [a-z]+::\s*", "", ln)
                out.append(rest)
            continue
        if in_directive:
            if ln.strip() == "" or ln.startswith((" ", "\t")) and re.match(r"^\s+:", ln):
                continue
            in_directive = False
        if re.match(r"^\s*([=\-~^\"'`#*+.:_])\1{3,}\s*$", ln):
            continue
        ln = RST_ROLE.sub(r"\1", ln)
        ln = ln.replace("``", "").replace("**", "")
        ln = re.sub(r"`([^`]*?)\s*<[^>]*>`_+", r"\1", ln)
        ln = re.sub(r"`([^`]+)`_*", r"\1", ln)
        out.append(ln)
    return "\n".join(out)


def dict_to_text(s):
    s = re.sub(r"\\[^\\\n]{0,60}\\", "", s)          # pronunciations \Pro*nun`ci*a"tion\
    s = re.sub(r"\s*\((?=[^()\n]*\[[a-z.]{1,3}[\^~=:`'\"]?\])[^()\n]{1,60}\)", "", s)  # gcide (pro*nun"ci*a`tion)
    s = re.sub(r"^\s*00-database-.*$", "", s, flags=re.M)
    s = s.replace("{", "").replace("}", "")
    s = re.sub(r"\[(1913 Webster|WordNet 1\.5|PJC|Webster 1913 Suppl\.|Century Dict\.)[^\]]*\]", "", s)
    s = re.sub(r"^\s*\d{2}-\d{2}-\d{4}\s*$", "", s, flags=re.M)
    # dictd headword lines "word" at column 0 start entries; the body is indented.
    return s


def info_to_text(s):
    s = re.sub(r"\x1f\n(File|Tag Table|End Tag Table|Indirect)[^\n]*\n", "\n\n", s)
    s = re.sub(r"^(File|Node|Tag Table):.*$", "", s, flags=re.M)
    s = re.sub(r"^\* Menu:\s*$", "", s, flags=re.M)
    return s


def man_to_text(s):
    lines = s.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > 2:
        lines = lines[1:-1]                          # running header and footer
    return "\n".join(lines)


def reflow(par):
    lines = [ln.rstrip() for ln in par.split("\n")]
    ind = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    lines = [ln[ind:] for ln in lines]
    body = [ln.strip() for ln in lines]
    if len(body) >= 2 and sum(len(b) >= 45 for b in body[:-1]) >= 0.8 * (len(body) - 1) \
            and not any(re.match(r"^([-*+•]|\d+[.)]|[$#>|])\s", b) for b in body[1:]):
        return re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(body))
    return "\n".join(re.sub(r"[ \t]+$", "", ln) for ln in lines)


def good(par):
    n = len(par)
    if n == 0:
        return False
    ascii_ = sum(c < "\x80" for c in par)
    alpha = sum(c.isalpha() for c in par)
    return ascii_ >= 0.95 * n and (n < 20 or alpha >= 0.45 * n)


def convert(kind, text):
    if kind == "html":
        return html_to_text(text)
    if kind == "rst":
        return rst_to_text(text)
    if kind == "dict":
        return dict_to_text(text)
    if kind == "info":
        return info_to_text(text)
    if kind == "man":
        return man_to_text(text)
    return text


def h(s):
    return hashlib.sha1(s.encode("utf-8", "replace")).digest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--manifest", required=True)
    args = ap.parse_args()
    seen = set()
    stats = {}
    train_f = lzma.open(os.path.join(args.out, "train.txt.xz"), "wt", encoding="utf-8", preset=6)
    held_f = lzma.open(os.path.join(args.out, "heldout.txt.xz"), "wt", encoding="utf-8", preset=6)
    held_json = open(os.path.join(args.out, "heldout.jsonl"), "w", encoding="utf-8")
    for src, (kind, desc, pkgs, cap) in SOURCES.items():
        d = os.path.join(args.raw, src.split("/")[0])
        if src.startswith("dict/"):
            files = [src.split("/")[1] + ".txt"]
        else:
            files = sorted(os.listdir(d)) if os.path.isdir(d) else []
        if src == "linux":
            files = [f for f in files if not f.startswith("translations")]
        # cap: files in a fixed pseudo-random order so a cap takes a spread, not a prefix
        files.sort(key=lambda f: h(src + f))
        st = dict(desc=desc, packages=pkgs, files=0, raw_bytes=0, kept_bytes=0, train_bytes=0,
                  heldout_bytes=0, dup_paragraphs=0, dropped_paragraphs=0, chunks=0)
        for fn in files:
            p = os.path.join(d, fn)
            with open(p, "rb") as f:
                raw = f.read()
            st["files"] += 1
            st["raw_bytes"] += len(raw)
            text = convert(kind, raw.decode("utf-8", "replace")).replace("\r\n", "\n")
            text = CTRL.sub("", text.replace("\t", "    ").replace("\ufffd", ""))
            pars = []
            for par in re.split(r"\n[ \t]*\n", text):
                if not par.strip():
                    continue
                par = reflow(par)
                if not good(par):
                    st["dropped_paragraphs"] += 1
                    continue
                if len(par) >= 40:
                    key = h(re.sub(r"\s+", " ", par.lower()).strip())
                    if key in seen:
                        st["dup_paragraphs"] += 1
                        continue
                    seen.add(key)
                pars.append(par)
            chunks, cur, n = [], [], 0
            for par in pars:
                if cur and n + len(par) > CHUNK:
                    chunks.append("\n\n".join(cur))
                    cur, n = [], 0
                cur.append(par)
                n += len(par) + 2
            if cur:
                chunks.append("\n\n".join(cur))
            for i, c in enumerate(chunks):
                if len(c) < 200 and kind != "plain":
                    continue
                b = len(c.encode("utf-8"))
                st["kept_bytes"] += b
                st["chunks"] += 1
                if h(f"{src}/{fn}/{i}")[0] % 50 == 0:
                    held_f.write(c + "\n\x1e\n")
                    held_json.write(json.dumps(dict(source=src, file=fn, text=c)) + "\n")
                    st["heldout_bytes"] += b
                else:
                    train_f.write(c + "\n\x1e\n")
                    st["train_bytes"] += b
            if cap and st["kept_bytes"] >= cap * 1e6:
                st["capped_at_files"] = st["files"]
                st["files_available"] = len(files)
                break
        stats[src] = st
        print(f"{src:14s} files {st['files']:6d} raw {st['raw_bytes']/1e6:8.2f} MB kept "
              f"{st['kept_bytes']/1e6:7.2f} MB dup {st['dup_paragraphs']}", file=sys.stderr)
    train_f.close()
    held_f.close()
    held_json.close()
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    write_manifest(args, thin(args.out))


def write_manifest(args, stats):
    tot = {k: sum(s[k] for s in stats.values()) for k in ("raw_bytes", "kept_bytes", "train_bytes_after_thinning", "heldout_bytes")}
    tot["train_bytes"] = tot["train_bytes_after_thinning"]
    with open(args.manifest, "w") as f:
        f.write("# Training corpus of the demo model\n\n"
                "Made by `tools/train/make_corpus.sh` (Debian 12 packages → `.train-data/raw/`) and "
                "`tools/train/corpus_build.py` (convert, clean, de-duplicate by paragraph hash, "
                "split 98/2 by chunk-name hash). Byte counts are UTF-8 bytes of cleaned text; "
                "`raw` is what was extracted before cleaning. Sources with a cap take files in a "
                "fixed hashed order until the cap.\n\n"
                "Dictionaries (single files) are then thinned: every 2nd train chunk of gcide and every "
                "4th of WordNet is kept (`train MB` is after thinning).\n\n"
                "| source | what | Debian packages | files used | raw MB | kept MB | train MB | held-out MB | duplicate paragraphs dropped |\n"
                "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
        for src, s in stats.items():
            used = f"{s['files']}" + (f" of {s['files_available']} (cap)" if "files_available" in s else "")
            f.write(f"| {src} | {s['desc']} | {s['packages']} | {used} | {s['raw_bytes']/1e6:.2f} | "
                    f"{s['kept_bytes']/1e6:.2f} | {s['train_bytes_after_thinning']/1e6:.2f} | {s['heldout_bytes']/1e6:.2f} | {s['dup_paragraphs']} |\n")
        f.write(f"| **total** | | | | {tot['raw_bytes']/1e6:.2f} | {tot['kept_bytes']/1e6:.2f} | "
                f"{tot['train_bytes']/1e6:.2f} | {tot['heldout_bytes']/1e6:.2f} | |\n")
    print("total", {k: round(v / 1e6, 2) for k, v in tot.items()}, "MB", file=sys.stderr)


# Dictionaries are single files, so the per-file cap above does not bite on them; they are
# thinned afterwards by keeping every Nth train chunk (an even spread over the alphabet).
THIN = {"dict/gcide": 2, "dict/wn": 4}


def thin(out_dir):
    """Rewrites train.txt.xz keeping every THIN[src]-th chunk of the thinned sources.
    Chunks are identified by source from the per-source train byte counts in stats.json
    (the file is written source by source in SOURCES order)."""
    stats = json.load(open(os.path.join(out_dir, "stats.json")))
    bounds, acc = [], 0
    for src in SOURCES:
        acc += stats[src]["train_bytes"]
        bounds.append((acc, src))
    src_i, pos, ordinal = 0, 0, {}
    kept = {src: 0 for src in SOURCES}
    inp = lzma.open(os.path.join(out_dir, "train.txt.xz"), "rt", encoding="utf-8")
    out = lzma.open(os.path.join(out_dir, "train.thin.txt.xz"), "wt", encoding="utf-8", preset=6)
    for c in inp.read().split("\n\x1e\n"):
        if not c:
            continue
        while src_i < len(bounds) - 1 and pos >= bounds[src_i][0]:
            src_i += 1
        src = bounds[src_i][1]
        b = len(c.encode("utf-8"))
        pos += b
        n = ordinal.get(src, 0)
        ordinal[src] = n + 1
        if n % THIN.get(src, 1) == 0:
            out.write(c + "\n\x1e\n")
            kept[src] += b
    assert pos == acc, (pos, acc)
    inp.close()
    out.close()
    os.replace(os.path.join(out_dir, "train.thin.txt.xz"), os.path.join(out_dir, "train.txt.xz"))
    for src in SOURCES:
        stats[src]["train_bytes_after_thinning"] = kept[src]
    json.dump(stats, open(os.path.join(out_dir, "stats.json"), "w"), indent=1)
    return stats




if __name__ == "__main__":
    main()
