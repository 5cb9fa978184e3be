#!/usr/bin/env bash
# Assembles the English training corpus for the demo model from Debian 12 packages.
#   bash tools/train/make_corpus.sh            (as root on Debian 12; installs the packages)
# Output (git-ignored): .train-data/train.txt.xz, .train-data/heldout.txt.xz,
#   .train-data/stats.json; the manifest is tools/train/CORPUS.md.
# Raw per-source text is extracted into .train-data/raw/<source>/ and then cleaned,
# de-duplicated by paragraph hash and split 98/2 by tools/train/corpus_build.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
PKGS="dict-gcide dict-foldoc dict-devil dict-jargon dict-wn fortunes fortunes-min fortune-mod
  debian-reference-en debian-handbook python3.11-doc perl-doc linux-doc-6.1 maint-guide
  developers-reference gnu-standards bash-doc manpages manpages-dev glibc-doc info man-db
  groff-base bsdextrautils xz-utils perl"
if [ "${SKIP_APT:-0}" != 1 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS >/dev/null
fi
R=.train-data/raw
rm -rf "$R"; mkdir -p "$R"
export LC_ALL=C.UTF-8 MANWIDTH=80

# Dictionaries (dictd format, gzip-compatible): one file each.
mkdir -p $R/dict
for d in gcide wn foldoc jargon devil; do zcat /usr/share/dictd/$d.dict.dz > $R/dict/$d.txt; done

# Fortunes: plain text, entries separated by '%' lines.
mkdir -p $R/fortunes
for f in /usr/share/games/fortunes/*; do
  case "$f" in *.dat|*.u8) continue;; esac
  [ -f "$f" ] && [ ! -L "$f" ] && sed 's/^%$//' "$f" > $R/fortunes/$(basename "$f").txt
done

# Manual pages, real files only, rendered to plain text.
mkdir -p $R/man
# Sections 1, 5, 7, 8 (commands, file formats, overviews, administration); every third page
# in name order (rendering is ~4 pages/s on 2 cores); the gcloud SDK's thousands of
# generated near-duplicate pages are skipped.
find /usr/share/man/man[1578] -maxdepth 1 -type f -name '*.gz' | grep -v /gcloud | sort | awk 'NR % 3 == 1' > .train-data/manlist
xargs -P "$(nproc)" -n 50 sh -c 'for f; do o=$(echo "$f" | sed "s|/usr/share/man/||; s|/|_|g; s|\.gz$||"); man -l -P cat "$f" 2>/dev/null | col -bx > "'$R'/man/$o.txt" 2>/dev/null || true; done' _ < .train-data/manlist

# Info manuals (GNU coreutils, bash, sed, grep, libc, standards, ...).
mkdir -p $R/info
for f in /usr/share/info/*.info*.gz; do zcat "$f" > $R/info/$(basename "$f" .gz).txt; done

# Perl documentation (POD -> text).
mkdir -p $R/perl
for f in /usr/share/perl/5.*/pod/*.pod; do pod2text -w 80 "$f" > $R/perl/$(basename "$f" .pod).txt 2>/dev/null || true; done

# reStructuredText sources: Python, Linux kernel, Debian developers' reference.
mkdir -p $R/python $R/linux $R/devref
find /usr/share/doc/python3.11/html/_sources -name '*.txt' | while read -r f; do cp "$f" "$R/python/$(echo "${f#*/_sources/}" | tr / _)"; done
find /usr/share/doc/linux-doc-6.1/Documentation -name '*.rst.gz' | while read -r f; do zcat "$f" > "$R/linux/$(echo "${f#*/Documentation/}" | tr / _ | sed 's/\.gz$//').txt"; done
cp /usr/share/developers-reference/_sources/*.txt $R/devref/

# HTML books: Debian Reference, Debian Administrator's Handbook (en-US), maint-guide.
mkdir -p $R/html
cp /usr/share/debian-reference/*.en.html $R/html/ 2>/dev/null || true
for f in /usr/share/doc/debian-handbook/html/en-US/*.html; do cp "$f" "$R/html/handbook_$(basename "$f")"; done
for f in $(find /usr/share/doc/maint-guide -name '*.en.html*'); do case "$f" in *.gz) zcat "$f";; *) cat "$f";; esac > "$R/html/maint_$(basename "$f" .gz)"; done

# Licenses and package READMEs.
mkdir -p $R/licenses $R/readme
for f in /usr/share/common-licenses/*; do [ -f "$f" ] && [ ! -L "$f" ] && cp "$f" $R/licenses/; done
for f in /usr/share/doc/*/README /usr/share/doc/*/README.gz /usr/share/doc/*/README.Debian /usr/share/doc/*/README.Debian.gz /usr/share/doc/*/README.md.gz /usr/share/doc/*/README.txt*; do
  [ -f "$f" ] || continue
  o="$R/readme/$(echo "${f#/usr/share/doc/}" | tr / _ | sed 's/\.gz$//').txt"
  case "$f" in *.gz) zcat "$f" > "$o";; *) cat "$f" > "$o";; esac
done

[ "${SKIP_BUILD:-0}" = 1 ] || python3 tools/train/corpus_build.py --raw $R --out .train-data --manifest tools/train/CORPUS.md
