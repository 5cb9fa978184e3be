// Writes tests/data/tokenizers/corpus.json: the strings the tokenizer exactness tests run on.
// Deterministic (fixed PRNG seed), no dependencies. Categories: many scripts and languages,
// emoji and ZWJ sequences, code, whitespace runs, digits, control characters, text that looks
// like special tokens, empty and one-character strings, very long words, and seeded random
// mixes of all of these.
//   node tests/tokenizer/make_corpus.mjs
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, "..", "data", "tokenizers", "corpus.json");

// Mulberry32: small, deterministic across Node versions.
let seed = 20261128;
function rand() {
  seed |= 0;
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];

const corpus = [];
const add = (...xs) => corpus.push(...xs);

// --- Languages and scripts -------------------------------------------------------------
add(
  "The quick brown fox jumps over the lazy dog.",
  "Hello, world! How are you doing today?",
  "It's a dog's life, isn't it? We'll see, they'd say, I'm sure you've heard.",
  "IT'S LOUD. WE'LL SEE. THEY'D. I'M. YOU'VE. SHE'S. DON'T.",
  "Le cœur a ses raisons que la raison ne connaît point.",
  "Über den Wolken muss die Freiheit wohl grenzenlos sein. Straße, Größe, Fußgängerübergänge.",
  "¿Dónde está la biblioteca? ¡Olé! Mañana será otro día.",
  "Português: não, coração, ações, você está bem?",
  "Italiano: perché è così difficile? Città, università.",
  "Nederlands: Het is een mooie dag om te fietsen.",
  "Svenska: Ärligt talat, så är det här en övning.",
  "Dansk/Norsk: Blåbærsyltetøy på brødskiva.",
  "Suomi: Hyvää huomenta, mitä kuuluu?",
  "Polski: Zażółć gęślą jaźń. Chrząszcz brzmi w trzcinie.",
  "Čeština: Příliš žluťoučký kůň úpěl ďábelské ódy.",
  "Magyar: Árvíztűrő tükörfúrógép.",
  "Română: Șapte țări își împart râul.",
  "Türkçe: Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul, ıstakoz.",
  "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
  "Українська: Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!",
  "Български: Жълтата дюля беше щастлива.",
  "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Σίσυφος, ΣΊΣΥΦΟΣ.",
  "עברית: דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
  "العربية: نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق.",
  "فارسی: به نام خداوند جان و خرد، کزین برتر اندیشه برنگذرد.",
  "اردو: میں نے کتاب پڑھی۔",
  "हिन्दी: ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।",
  "मराठी: महाराष्ट्र राज्य भारतातील एक राज्य आहे.",
  "বাংলা: আমি বাংলায় গান গাই।",
  "ਪੰਜਾਬੀ: ਸਤਿ ਸ੍ਰੀ ਅਕਾਲ",
  "ગુજરાતી: કેમ છો?",
  "தமிழ்: யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்.",
  "తెలుగు: దేశ భాషలందు తెలుగు లెస్స.",
  "ಕನ್ನಡ: ಎಲ್ಲರಿಗೂ ನಮಸ್ಕಾರ.",
  "മലയാളം: എല്ലാവർക്കും നമസ്കാരം.",
  "සිංහල: ආයුබෝවන්!",
  "ไทย: เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
  "ລາວ: ສະບາຍດີ",
  "ខ្មែរ: សួស្តី​ពិភពលោក",
  "မြန်မာ: မင်္ဂလာပါ",
  "བོད་ཡིག: བཀྲ་ཤིས་བདེ་ལེགས།",
  "ქართული: გამარჯობა მსოფლიო",
  "Հայերեն: Բարեւ աշխարհ",
  "አማርኛ: ሰላም ለዓለም",
  "ᠮᠣᠩᠭᠣᠯ: ᠰᠠᠢᠨ ᠪᠠᠢᠨ᠎ᠠ ᠤᠤ",
  "ᏣᎳᎩ: ᎣᏏᏲ",
  "ᐃᓄᒃᑎᑐᑦ: ᐊᐃᖓᐃ",
  "中文：我能吞下玻璃而不伤身体。繁體中文：我能吞下玻璃而不傷身體。",
  "日本語：いろはにほへと ちりぬるを わかよたれそ つねならむ。カタカナ、ｶﾀｶﾅ、漢字。",
  "한국어: 다람쥐 헌 쳇바퀴에 타고파. 키스의 고유조건은 입술끼리 만나야 하고.",
  "Tiếng Việt: Tôi có thể ăn thủy tinh mà không hại gì.",
  "Bahasa Indonesia: Saya bisa makan kaca, itu tidak menyakitkan saya.",
  "Kiswahili: Habari ya asubuhi? Nzuri sana, asante.",
  "Yorùbá: Ẹ káàárọ̀. Ọjọ́ dára.",
  "Esperanto: Eĥoŝanĝo ĉiuĵaŭde.",
  "Íslenska: Kæmi ný öxi hér, ykist þjófum nú bæði víl og ádrepa.",
  "Cymraeg: Parciais fy jac codi baw hud llawn dŵr ger tŷ Mabon.",
  "Gàidhlig: Mo nighean dhonn, Ò hùgaibh Ò.",
  "Combining: e\u0301 a\u0300 o\u0308 n\u0303 Z\u0351\u0358\u0356a\u0338\u0362l\u0337g\u0334o\u0335",
  "Precomposed vs decomposed: é é Å Å ﬁ ﬁ Ω Ω",
  "Full-width: ＡＢＣ１２３！？ｈｅｌｌｏ　ｗｏｒｌｄ",
  "Math: ∀x∈ℝ, ∃y: x² + y² = z². ∑ᵢ aᵢ ≤ ∞. 𝐀𝐁𝐂 𝔸𝔹ℂ 𝒜ℬ𝒞",
  "Mixed: Hello世界Привет🌍مرحبا",
  "Currency: $100, €200, £300, ¥400, ₹500, ₿0.01, ₽600",
  "Arrows and boxes: ← ↑ → ↓ ⇒ ⇔ ┌─┐ │ │ └─┘ ░▒▓█",
  "Music & misc: ♩♪♫♬ ☀☁☂☃ ✓✗ ☐☑ ★☆",
  "Braille: ⠓⠑⠇⠇⠕ ⠺⠕⠗⠇⠙",
  "Runic: ᚠᛇᚻ᛫ᛒᛦᚦ᛫ᚠᚱᚩᚠᚢᚱ᛫ᚠᛁᚱᚪ᛫ᚷᛖᚻᚹᛦᛚᚳᚢᛗ",
  "Gothic 𐌲𐌿𐍄𐌹𐍃𐌺 and Linear B 𐀀𐀁𐀂 and cuneiform 𒀀𒀁",
  "CJK extension B: 𠀀𠀁𠀂 𪚥 𩸽",
  "Private use: \uE000\uE001\uF8FF and plane 15 \u{F0000}",
  "Noncharacters: \uFFFE \uFFFF \u{10FFFF} \uFDD0",
  "Replacement char: \uFFFD and BOM \uFEFF inside",
  "Right-to-left mark \u200F and left-to-right mark \u200E and isolates \u2066x\u2069",
  "Soft\u00ADhyphen and zero\u200Bwidth\u200Cjoiners\u200D and word\u2060joiner",
  "Long s: ſ, 'ſ, it'ſ, KELVIN 'K, 'ꞵ",
);

// --- Emoji --------------------------------------------------------------------------------
add(
  "🤗", "😀😃😄😁", "I ❤️ NY", "👍🏻👍🏼👍🏽👍🏾👍🏿",
  "👨‍👩‍👧‍👦 family", "👩🏽‍💻 coder", "🏳️‍🌈 flag", "🏴‍☠️ pirate", "❤️‍🔥 heart on fire",
  "🧑🏿‍🤝‍🧑🏻 holding hands", "🇺🇸🇬🇧🇯🇵🇩🇪🇫🇷", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 Scotland (tag sequence)",
  "1️⃣ 2️⃣ #️⃣ *️⃣ keycaps", "☺ ☺️ text vs emoji presentation", "🫠🫡🫥🪿🩷 newer emoji",
  "emoji without spaces:🍕🍔🍟🌭🍿", "😀 😀  😀   😀",
);

// --- Code ---------------------------------------------------------------------------------
add(
  "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
  "#include <stdio.h>\nint main(void) {\n\tprintf(\"Hello, %s!\\n\", \"world\");\n\treturn 0;\n}\n",
  "template <typename T>\nstd::vector<T> v{1, 2, 3}; // C++17\nauto [a, b] = std::pair{1, 2};",
  "const f = async (x) => { await fetch(`/api/${x}`); return x?.y ?? 0; };",
  "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%smith%' ORDER BY id DESC;",
  "<html><head><title>Test</title></head><body><p class=\"x\">Hi &amp; bye</p></body></html>",
  "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
  "for i in $(seq 1 10); do echo \"$i\" | grep -E '^[0-9]+$' >> /tmp/out.log 2>&1; done",
  "regex: ^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*)$",
  "fn main() -> Result<(), Box<dyn Error>> {\n    let x: Vec<u8> = vec![0; 16];\n    Ok(())\n}",
  "    indented with four spaces\n\tand a tab\n        and eight spaces",
  "if (a != b && c <= d || !e) { x += 1; y -= 2; z *= 3; w /= 4; } // ops",
  "x = [i**2 for i in range(10) if i % 2 == 0]  # list comprehension",
  "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
  "\\begin{equation} E = mc^2 \\end{equation} % LaTeX",
  "| col1 | col2 |\n|------|------|\n| a    | b    |",
  "https://example.com/path/to/page?query=1&other=two#frag mailto:user@example.org",
  "C:\\Users\\name\\Documents\\file.txt /usr/local/bin/python3",
  "0x1F 0b1010 0o777 1e-10 3.14159 -42 +7 1_000_000",
  "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case-id PascalCase",
  "a=1;b=2;c=a+b;print(c)",
  "----------====----------********########~~~~~~~~",
  "...!!!???,,,;;;:::''''\"\"\"\"",
  "@decorator\nclass Foo(Bar, metaclass=Meta):\n    pass",
);

// --- Whitespace ---------------------------------------------------------------------------
add(" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\n \n",
    "a  b", "a   b", "a\tb", "a\nb", "a\n\nb", "a\r\nb", "a \n b", "a\t \n\t b",
    "  leading", "trailing  ", "  both  ", "\n\nnewlines first", "ends with newline\n",
    "word \n\n\n   word", "tabs\t\t\tin\t\tthe\tmiddle", "mixed \t \n \r\n \t end",
    " ".repeat(50), "\n".repeat(30), "\t".repeat(17), " \n".repeat(20), "x" + " ".repeat(33) + "y",
    "\u00A0nbsp\u00A0\u00A0twice", "ideographic\u3000space", "en\u2002em\u2003thin\u2009hair\u200A",
    "line\u2028separator\u2029paragraph", "next\u0085line", "vertical\u000Btab\u000Cformfeed",
    "ogham\u1680space", "narrow\u202Fnbsp", "math\u205Fspace", " \uFEFF ");
// Every combination of up to 3 of space, tab, newline, CR between two words.
const ws = [" ", "\t", "\n", "\r"];
for (const a of ws) for (const b of ws) add(`w${a}${b}w`);
for (let i = 0; i < 24; ++i) add(`x${pick(ws)}${pick(ws)}${pick(ws)}y`);

// --- Digits -------------------------------------------------------------------------------
add("0", "7", "42", "123", "1234", "12345", "123456", "1234567", "12345678901234567890",
    "3.14159265358979323846264338327950288419716939937510",
    "1,234,567.89", "1 000 000", "2026-11-28T12:34:56Z", "+1 (555) 123-4567",
    "v1.2.3-rc.4+build.5", "١٢٣٤٥ Arabic-Indic", "०१२३४५ Devanagari", "①②③ ⅠⅡⅢ ½¾",
    "１２３４ full-width digits", "𝟘𝟙𝟚 math digits", "x1y22z333w4444",
    "9".repeat(100), "1234567890".repeat(30));

// --- Control characters --------------------------------------------------------------------
for (let c = 0; c < 32; ++c) {
  if (c === 9 || c === 10 || c === 13) continue;
  add(`a${String.fromCharCode(c)}b`);
}
add("\u007F delete", "\u0080\u0081\u009F C1 controls", "\u0000", "nul\u0000in\u0000middle",
    "bell\u0007 escape\u001B[31mred\u001B[0m");

// --- Special-token look-alikes --------------------------------------------------------------
add("<s>", "</s>", "<unk>", "<s>Hello</s>", "<s> Hello </s>", " <s>", "<s> ", "<s><s></s></s>",
    "Hello <s> world </s> again", "<S>", "< s >", "<s", "s>", "<<s>>", "</s></s>x",
    "<|begin_of_text|>", "<|end_of_text|>", "<|begin_of_text|>Hello<|end_of_text|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>",
    "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<|reserved_special_token_0|> <|reserved_special_token_250|>",
    "<|begin_of_text|", "|begin_of_text|>", "<|BEGIN_OF_TEXT|>", "<|eot_id|><|eot_id|>",
    "text<|eot_id|>text", " <|eot_id|> ", "<0x41>", "<0xFF>", "▁", "▁▁hello", "Ġhello",
    "<pad>", "[INST] hi [/INST]", "<<SYS>>\nsys\n<</SYS>>", "<|im_start|>user\nhi<|im_end|>");

// --- Empty and one-character strings ---------------------------------------------------------
add("");
for (let c = 33; c < 127; ++c) add(String.fromCharCode(c));
add("é", "ß", "ñ", "Ω", "я", "א", "ع", "क", "ก", "中", "あ", "ア", "한", "😀", "𝄞", "\u0301",
    "\u200D", "\uFEFF", "\u00A0", "\u3000", "ſ");

// --- Very long words --------------------------------------------------------------------------
add("a".repeat(1000), "ab".repeat(700), "abc".repeat(500),
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
    "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
    "supercalifragilisticexpialidocious".repeat(20),
    "中文".repeat(300), "😀".repeat(200), "é".repeat(400), "ॐ".repeat(150),
    "x".repeat(3000) + " " + "y".repeat(3000), "_".repeat(500), "-".repeat(257),
    "0".repeat(2000), "Aa".repeat(1500));
// Long pseudo-random letter strings (no spaces).
for (let i = 0; i < 6; ++i) {
  let s = "";
  const n = 500 + Math.floor(rand() * 2500);
  for (let j = 0; j < n; ++j) s += String.fromCharCode(97 + Math.floor(rand() * 26));
  add(s);
}

// --- Seeded random mixes -----------------------------------------------------------------------
const pools = [
  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n\r  ",
  ".,;:!?'\"()[]{}<>/\\|@#$%^&*-_=+~`", "éèêëàâäôöûüçñßøåæœ", "абвгдежзийклмнопрстуфхцчшщъыьэюя",
  "αβγδεζηθικλμνξοπρστυφχψω", "的一是不了人我在有他这为之大来以个中上们", "あいうえおかきくけこアイウエオ",
  "가나다라마바사아자차카타파하", "ابتثجحخدذرزسشصضطظعغفقكلمنهوي", "אבגדהוזחטיכלמנסעפצקרשת",
  "अआइईउऊएऐओऔकखगघ", "กขคงจฉชซญดตถทนบปผพฟภมยรลวศษสหอฮ",
];
const emoji = ["😀", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🤗", "🏳️‍🌈", "1️⃣"];
const specials = ["<s>", "</s>", "<|begin_of_text|>", "<|eot_id|>", "<unk>"];
for (let i = 0; i < 70; ++i) {
  let s = "";
  const n = 1 + Math.floor(rand() * 60);
  for (let j = 0; j < n; ++j) {
    const r = rand();
    if (r < 0.05) s += pick(emoji);
    else if (r < 0.07) s += pick(specials);
    else if (r < 0.09) s += String.fromCharCode(Math.floor(rand() * 32));
    else {
      const pool = Array.from(pick(pools));
      const len = 1 + Math.floor(rand() * 8);
      for (let k = 0; k < len; ++k) s += pick(pool);
    }
  }
  add(s);
}

// --- Prose --------------------------------------------------------------------------------------
for (const file of ["/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/Apache-2.0"]) {
  if (!fs.existsSync(file)) continue;
  const paragraphs = fs.readFileSync(file, "utf8").split(/\n\s*\n/).filter((p) => p.length > 200);
  for (let i = 0; i < 8 && paragraphs.length > 0; ++i) add(paragraphs[(i * 7) % paragraphs.length]);
}

fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify(corpus, null, 0) + "\n");
console.log(`wrote ${corpus.length} strings to ${out}`);
