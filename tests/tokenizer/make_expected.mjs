// Writes tests/data/tokenizers/expected_<name>.json: for every string of corpus.json, the ids
// and decoded text that an independent implementation produces — transformers.js' tokenizers
// (npm @lenml/tokenizers 3.7.2, MIT), loading the very tokenizer.json / tokenizer_config.json
// files the C++ tests load. The C++ tests never need the network; re-run this only when the
// corpus or the reference files change:
//   cd tests/tokenizer && npm ci && node make_corpus.mjs && node make_expected.mjs
//
// Per case (corpus order) the file holds:
//   ids       encode(x) with special tokens (BOS/EOS as the tokenizer configures them)
//   plain     encode(x, add_special_tokens=false), only when it is not ids minus the
//             tokenizer-wide prefix/suffix (recorded once as special_prefix/special_suffix)
//   decoded   decode(plain), only when it differs from x (otherwise roundtrip is true)
//   with_special / skip_special   decode(ids) without and with skip_special_tokens, for
//             strings of at most 200 UTF-16 units (keeps the file small)
// clean_up_tokenization_spaces is off for every decode: the engine returns exact text.
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";
import { TokenizerLoader } from "@lenml/tokenizers";

const here = path.dirname(fileURLToPath(import.meta.url));
const data = path.join(here, "..", "data", "tokenizers");
const corpus = JSON.parse(fs.readFileSync(path.join(data, "corpus.json"), "utf8"));
const version = JSON.parse(
  fs.readFileSync(path.join(here, "node_modules", "@lenml", "tokenizers", "package.json"), "utf8")
).version;

function decode(tok, ids, skip) {
  // transformers.js rejects an empty id list; its decode of nothing is "".
  if (ids.length === 0) return "";
  return tok.decode(ids, { skip_special_tokens: skip, clean_up_tokenization_spaces: false });
}

for (const name of ["spm-bpe-32k", "llama3-bpe-128k"]) {
  const dir = path.join(data, name);
  const tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
  });
  const empty = tok.encode("");
  // For these tokenizers the specials of an empty input are the whole prefix (no EOS).
  const prefix = empty, suffix = [];
  const cases = [];
  let roundtrips = 0;
  for (const x of corpus) {
    const ids = tok.encode(x);
    const plain = tok.encode(x, { add_special_tokens: false });
    const c = { ids };
    const expected = [...prefix, ...plain, ...suffix];
    if (expected.length !== ids.length || expected.some((v, i) => v !== ids[i])) c.plain = plain;
    const decoded = decode(tok, plain, false);
    if (decoded === x) {
      c.roundtrip = true;
      ++roundtrips;
    } else {
      c.decoded = decoded;
    }
    if (x.length <= 200) {
      c.with_special = decode(tok, ids, false);
      c.skip_special = decode(tok, ids, true);
    }
    cases.push(c);
  }
  const out = {
    reference: `@lenml/tokenizers ${version} (transformers.js tokenizers), node ${process.version}`,
    tokenizer: name,
    special_prefix: prefix,
    special_suffix: suffix,
    count: cases.length,
    cases,
  };
  const text =
    "{" +
    Object.entries(out)
      .map(([k, v]) =>
        k === "cases"
          ? `"cases":[\n${v.map((c) => JSON.stringify(c)).join(",\n")}\n]`
          : `${JSON.stringify(k)}:${JSON.stringify(v)}`
      )
      .join(",\n") +
    "}\n";
  fs.writeFileSync(path.join(data, `expected_${name}.json`), text);
  console.log(`${name}: ${cases.length} cases, ${roundtrips} round-trip, prefix ${JSON.stringify(prefix)}`);
}
