// Which Unicode scripts a string's characters belong to (the Script property,
// UAX #24), for refusing mixed-script localparts: "аlice" with a Cyrillic а
// is, after Nodeprep, another account than "alice" that looks the same
// (UTS #39 §5 calls such strings mixed-script). Characters of the Common and
// Inherited scripts (digits, punctuation, combining marks) belong to no script
// here, so "alice.2", "josé" and "bob_" are single-script.

/**
 * Every value of the Script property that the engine knows (Unicode 17 in
 * Node 24) besides Common and Inherited, Unknown last. A name the engine does
 * not know is skipped when the patterns are built, so an older engine still works.
 */
const SCRIPT_NAMES = (
  'Latin Greek Cyrillic Armenian Hebrew Arabic Syriac Thaana Nko Samaritan Mandaic Devanagari Bengali Gurmukhi Gujarati ' +
  'Oriya Tamil Telugu Kannada Malayalam Sinhala Thai Lao Tibetan Myanmar Georgian Hangul Ethiopic Cherokee ' +
  'Canadian_Aboriginal Ogham Runic Khmer Mongolian Hiragana Katakana Bopomofo Han Yi Adlam Ahom Anatolian_Hieroglyphs ' +
  'Avestan Balinese Bamum Bassa_Vah Batak Beria_Erfe Bhaiksuki Brahmi Braille Buginese Buhid Carian Caucasian_Albanian ' +
  'Chakma Cham Chorasmian Coptic Cuneiform Cypriot Cypro_Minoan Deseret Dives_Akuru Dogra Duployan Egyptian_Hieroglyphs ' +
  'Elbasan Elymaic Garay Glagolitic Gothic Grantha Gunjala_Gondi Gurung_Khema Hanifi_Rohingya Hanunoo Hatran ' +
  'Imperial_Aramaic Inscriptional_Pahlavi Inscriptional_Parthian Javanese Kaithi Kawi Kayah_Li Kharoshthi ' +
  'Khitan_Small_Script Khojki Khudawadi Kirat_Rai Lepcha Limbu Linear_A Linear_B Lisu Lycian Lydian Mahajani Makasar ' +
  'Manichaean Marchen Masaram_Gondi Medefaidrin Meetei_Mayek Mende_Kikakui Meroitic_Cursive Meroitic_Hieroglyphs Miao ' +
  'Modi Mro Multani Nabataean Nag_Mundari Nandinagari New_Tai_Lue Newa Nushu Nyiakeng_Puachue_Hmong Ol_Chiki Ol_Onal ' +
  'Old_Hungarian Old_Italic Old_North_Arabian Old_Permic Old_Persian Old_Sogdian Old_South_Arabian Old_Turkic ' +
  'Old_Uyghur Osage Osmanya Pahawh_Hmong Palmyrene Pau_Cin_Hau Phags_Pa Phoenician Psalter_Pahlavi Rejang Saurashtra ' +
  'Sharada Shavian Siddham Sidetic SignWriting Sogdian Sora_Sompeng Soyombo Sundanese Sunuwar Syloti_Nagri Tagalog ' +
  'Tagbanwa Tai_Le Tai_Tham Tai_Viet Tai_Yo Takri Tangsa Tangut Tifinagh Tirhuta Todhri Tolong_Siki Toto ' +
  'Tulu_Tigalari Ugaritic Vai Vithkuqi Wancho Warang_Citi Yezidi Zanabazar_Square ' +
  // Unassigned code points (and those of scripts newer than this list).
  'Unknown'
).split(' ');

const NEUTRAL = '\\p{Script=Common}\\p{Script=Inherited}';

const ASCII = /^[\x00-\x7f]*$/;

let scriptPatterns: Array<[string, RegExp]> | null = null;

/** Built on first use: the check runs at registration and login only. */
function patterns(): Array<[string, RegExp]> {
  if (scriptPatterns === null) {
    scriptPatterns = [];
    for (const name of SCRIPT_NAMES) {
      try {
        scriptPatterns.push([name, new RegExp(`^\\p{Script=${name}}$`, 'u')]);
      } catch {
        // Not known to this engine's Unicode version.
      }
    }
  }
  return scriptPatterns;
}

function scriptOf(ch: string): string {
  for (const [name, re] of patterns()) if (re.test(ch)) return name;
  // A script of a newer Unicode than this list: counted as one script of its own.
  return 'Unknown';
}

/**
 * The scripts of the characters of `s`, in order of first appearance, Common
 * and Inherited left out; it stops after the fourth. Costs one pattern test per
 * character, plus a look-up through the script list for each script found.
 */
export function scriptsOf(s: string): string[] {
  const found: string[] = [];
  let known = new RegExp(`^[${NEUTRAL}]$`, 'u');
  for (const ch of s) {
    if (known.test(ch)) continue;
    const name = scriptOf(ch);
    if (found.includes(name)) continue;
    found.push(name);
    // More than a writing system's few scripts is mixed whatever follows.
    if (found.length > 3) break;
    known = new RegExp(`^[${found.map((n) => `\\p{Script=${n}}`).join('')}${NEUTRAL}]$`, 'u');
  }
  return found;
}

/**
 * Script sets that UTS #39 §5.1 counts as one writing system (its augmented
 * script sets): Japanese writes Han with Hiragana and Katakana, Korean Han
 * with Hangul, Chinese Han with Bopomofo.
 */
const ONE_WRITING_SYSTEM: ReadonlyArray<ReadonlySet<string>> = [
  new Set(['Han', 'Hiragana', 'Katakana']),
  new Set(['Han', 'Hangul']),
  new Set(['Han', 'Bopomofo']),
];

/**
 * True when `s` has letters of more than one script (UTS #39 §5.1), Common and
 * Inherited characters not counting and the Japanese, Korean and Chinese
 * combinations counting as one.
 */
export function isMixedScript(s: string): boolean {
  // ASCII letters are all Latin.
  if (ASCII.test(s)) return false;
  const scripts = scriptsOf(s);
  if (scripts.length <= 1) return false;
  return !ONE_WRITING_SYSTEM.some((set) => scripts.every((n) => set.has(n)));
}
