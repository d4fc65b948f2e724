// Writes the tokenizer fixtures of the built-in model's tests (tests/fixtures/builtin/):
//   corpus_sample.txt   a few KB of the training text from each source of tools/train/data/corpus.txt
//   tokenizer_ids.json  the ids Hugging Face `tokenizers` gives for every passage of the sample
//                       and for extra UTF-8/punctuation strings, read from models/builtin/tokenizer.json
// The ids come from the Rust `tokenizers` library (its npm binding, same version as training):
//   (cd /tmp/hftok && npm install tokenizers@0.23.2)
//   node tools/train/make_builtin_fixtures.mjs /tmp/hftok/node_modules/tokenizers
// Needs the corpus (bash tools/train/prepare_corpus.sh); the output is committed, so tests do not.
import { createRequire } from "module";
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const tokPkg = process.argv[2];
if (!tokPkg) {
  console.error("usage: node tools/train/make_builtin_fixtures.mjs PATH/TO/node_modules/tokenizers");
  process.exit(2);
}
const { Tokenizer } = createRequire(import.meta.url)(path.resolve(tokPkg));
const version = JSON.parse(fs.readFileSync(path.join(path.resolve(tokPkg), "package.json"))).version;

// Passages as the training script splits them (blank lines), in corpus order: fortunes, then the
// KJV (from Genesis 1 to Revelation 22), then the Brown corpus.
const corpus = fs.readFileSync(path.join(root, "tools/train/data/corpus.txt"), "utf8");
const ps = corpus.split("\n\n").filter((p) => p.trim());
const kjv0 = ps.findIndex((p) => p.startsWith("In the beginning God created"));
const brown0 = ps.findIndex((p) => p.startsWith("And he shewed me a pure river")) + 1;
const fortunes = ps.slice(0, kjv0), kjv = ps.slice(kjv0, brown0), brown = ps.slice(brown0);
const every = (arr, k) => arr.filter((_, i) => i % k === 0);
const nonAscii = (p) => /[^\x00-\x7f]/.test(p);
const sample = [
  ...every(fortunes, 600),
  ...fortunes.filter(nonAscii).filter((p) => /über|ß|donât/.test(p)),  // UTF-8 (and old mojibake)
  kjv[0],                                                               // Genesis 1
  kjv.reduce((a, b) => (b.length < a.length ? b : a)),                  // the shortest chapter
  ...every(brown, 1500),
];
const text = sample.join("\n\n") + "\n\n";
const outDir = path.join(root, "tests/fixtures/builtin");
fs.writeFileSync(path.join(outDir, "corpus_sample.txt"), text);

const extra = [
  "",
  "The old man said, \"Hello, world!\" It's 1964.",
  "don't won't I'm we'll they've she'd O'Brien's",
  "  two leading spaces,   runs   of spaces\n\n\ttabs\tand\r\nCRLF\n",
  "naïve café — “double” ‘single’ … ½ € £ ©",
  "Grüße aus Köln; Ελληνικά; русский; 日本語のテキスト; 한국어",
  "emoji 🙂👍🏽 and a family 👨‍👩‍👧 and e\u0301 (combining)",
  "Punctuation: (a) [b] {c} <d> a/b a\\b #1 $2.50 50% a&b a*b a+b=c ~x ^y `z` |w| @me!? ;:",
  "<s>special tokens</s> are matched literally <pad>",
  "KJV: And God said, Let there be light: and there was light.",
];
const tok = Tokenizer.fromFile(path.join(root, "models/builtin/tokenizer.json"));
const cases = [];
for (const t of [...sample, ...extra]) {
  const ids = (await tok.encode(t, null, { addSpecialTokens: false })).getIds();
  const back = await tok.decode(ids, false);
  if (back !== t) throw new Error("tokenizers does not round-trip: " + JSON.stringify(t));
  cases.push({ text: t, ids });
}
const all = (await tok.encode(text, null, { addSpecialTokens: false })).getIds();
const out = {
  origin: `Hugging Face tokenizers ${version} (npm binding of the Rust library), ` +
    "models/builtin/tokenizer.json, encode without special tokens; written by " +
    "tools/train/make_builtin_fixtures.mjs. Not produced by hybridserve.",
  sample_file: "corpus_sample.txt",
  sample_ids: all,
  cases,
};
fs.writeFileSync(path.join(outDir, "tokenizer_ids.json"), JSON.stringify(out, null, 0) + "\n");
console.log(`sample: ${sample.length} passages, ${Buffer.byteLength(text)} bytes ` +
  `(fortunes ${every(fortunes, 600).length}+3, kjv 2, brown ${every(brown, 1500).length}); ` +
  `${cases.length} cases, ${all.length} sample ids`);
