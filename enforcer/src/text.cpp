#include "cryptnono/enforcer/text.h"

#include <algorithm>
#include <array>
#include <cstdint>

#include "unicode_tables.h"

namespace cryptnono::enforcer {

namespace {

constexpr std::array<bool, 256> make_safe_table() {
  std::array<bool, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (char c : std::string_view("_@%+=:,./-")) t[static_cast<unsigned char>(c)] = true;
  return t;
}
constexpr auto kShlexSafe = make_safe_table();

constexpr std::array<bool, 128> make_ascii_word_table() {
  std::array<bool, 128> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  t['_'] = true;
  return t;
}
constexpr auto kAsciiWord = make_ascii_word_table();

constexpr std::array<char, 256> make_lower_table() {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
  return t;
}
constexpr auto kAsciiLower = make_lower_table();

bool is_cont(unsigned char b) { return (b & 0xC0) == 0x80; }

// Strict UTF-8 (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF), as
// Python's decoder. Returns the sequence length, or 0 when the bytes at `pos` are not a
// valid sequence.
size_t decode_utf8(std::string_view s, size_t pos, char32_t& cp) {
  auto at = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  size_t n = s.size() - pos;
  unsigned char b0 = at(pos);
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (n < 2 || !is_cont(at(pos + 1))) return 0;
    cp = (static_cast<char32_t>(b0 & 0x1F) << 6) | (at(pos + 1) & 0x3F);
    return 2;
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (n < 3) return 0;
    unsigned char b1 = at(pos + 1);
    unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;
    unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;  // 0xED A0..BF would be a surrogate
    if (b1 < lo || b1 > hi || !is_cont(at(pos + 2))) return 0;
    cp = (static_cast<char32_t>(b0 & 0x0F) << 12) | (static_cast<char32_t>(b1 & 0x3F) << 6) | (at(pos + 2) & 0x3F);
    return 3;
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (n < 4) return 0;
    unsigned char b1 = at(pos + 1);
    unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;
    if (b1 < lo || b1 > hi || !is_cont(at(pos + 2)) || !is_cont(at(pos + 3))) return 0;
    cp = (static_cast<char32_t>(b0 & 0x07) << 18) | (static_cast<char32_t>(b1 & 0x3F) << 12) |
         (static_cast<char32_t>(at(pos + 2) & 0x3F) << 6) | (at(pos + 3) & 0x3F);
    return 4;
  }
  return 0;
}

void encode_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

const unicode::FoldEntry* find_fold(char32_t cp) {
  const auto* begin = unicode::kFolds;
  const auto* end = unicode::kFolds + unicode::kFoldCount;
  const auto* it = std::lower_bound(begin, end, cp, [](const unicode::FoldEntry& e, char32_t v) { return e.from < v; });
  return it != end && it->from == cp ? it : nullptr;
}

bool is_word_code_point(char32_t cp) {
  if (cp < 0x80) return kAsciiWord[cp];
  const auto* begin = unicode::kWordRanges;
  const auto* end = unicode::kWordRanges + unicode::kWordRangeCount;
  // First range whose last >= cp.
  const auto* it = std::lower_bound(begin, end, cp, [](const unicode::WordRange& r, char32_t v) { return r.last < v; });
  return it != end && it->first <= cp;
}

// Sixteen bytes as one vector (GCC/Clang vector extensions: SSE2 on x86-64, NEON on
// arm64), signed so that bytes >= 0x80 are negative.
typedef signed char Bytes16 __attribute__((vector_size(16)));

Bytes16 load16(const char* p) {
  Bytes16 v;
  __builtin_memcpy(&v, p, 16);
  return v;
}

Bytes16 in_range(Bytes16 x, signed char lo, signed char hi) { return (x >= lo) & (x <= hi); }

// ASCII lower-casing, eight bytes at a time (SWAR): for bytes < 0x80, adding 0x3F sets
// bit 7 from 'A' up and adding 0x25 sets it above 'Z'; no carry crosses a byte. `s` and
// `o` may be the same. Only for ASCII input.
void lower_ascii(const char* s, size_t n, char* o) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    __builtin_memcpy(&w, s + i, 8);
    uint64_t upper = (w + 0x3F3F3F3F3F3F3F3Full) & ~(w + 0x2525252525252525ull) & 0x8080808080808080ull;
    w |= upper >> 2;
    __builtin_memcpy(o + i, &w, 8);
  }
  for (; i < n; ++i) o[i] = kAsciiLower[static_cast<unsigned char>(s[i])];
}

// Copies `src` to `dst` lower-cased, for the one-pass join. kArgs: `src` is a run of
// NUL-separated arguments, each NUL written as the joining space. The copy is exactly the
// shlex.join of the run, casefolded, when every byte is ASCII and shell-safe
// ([A-Za-z0-9_@%+=:,./-]), no argument is empty (two NULs in a row; the caller checks
// the first and last byte) and, without kArgs, there is no NUL at all. Returns kAllGood
// then; otherwise it gives up within 64 bytes of the first byte that breaks this, and
// returns how many leading bytes were checked and copied (a multiple of 64).
constexpr size_t kAllGood = ~size_t{0};

template <bool kArgs>
size_t fold_plain(std::string_view src, char* dst) {
  Bytes16 reject = {};
  auto step = [&](Bytes16 x, [[maybe_unused]] Bytes16 next) {
    Bytes16 upper = in_range(x, 'A', 'Z');
    Bytes16 safe = in_range(x, '+', ':') | upper | in_range(x, 'a', 'z') | (x == '%') | (x == '=') | (x == '@') |
                   (x == '_');  // '+' .. ':' is +,-./0-9:
    if constexpr (kArgs) {
      Bytes16 nul = x == 0;
      reject |= ~(safe | nul) | (nul & (next == 0));
      // ASCII only from here (anything else is rejected): 'A'..'Z' + 0x20; NUL | 0x20 = ' '.
      return x | ((upper | nul) & 0x20);
    } else {
      reject |= ~safe;
      return x | (upper & 0x20);
    }
  };
  auto rejected = [&] {
    uint64_t half[2];
    __builtin_memcpy(half, &reject, sizeof half);
    return (half[0] | half[1]) != 0;
  };
  const char* s = src.data();
  const size_t n = src.size();
  size_t i = 0;
  size_t good = 0;
  // Whole vectors while the load one byte ahead (kArgs) stays inside `src`, checked every
  // 64 bytes: a line that needs quoting is given up on soon after the first such byte.
  constexpr size_t kAhead = kArgs ? 1 : 0;
  for (; i + 16 + kAhead <= n; i += 16) {
    Bytes16 out = step(load16(s + i), kAhead ? load16(s + i + kAhead) : Bytes16{});
    __builtin_memcpy(dst + i, &out, 16);
    if ((i & 63) == 48) {
      if (rejected()) return good;
      good = i + 16;
    }
  }
  if (i < n && n >= 16 + kAhead) {
    // The rest as one more vector that overlaps the last one (the same bytes give the
    // same output), ending kAhead bytes early; then the last byte alone (kArgs: the
    // caller checked it is not a NUL, so it ends no empty argument).
    size_t last = n - 16 - kAhead;
    Bytes16 out = step(load16(s + last), kAhead ? load16(s + last + kAhead) : Bytes16{});
    __builtin_memcpy(dst + last, &out, 16);
    if constexpr (kArgs) {
      auto b = static_cast<unsigned char>(s[n - 1]);
      if (!kShlexSafe[b]) return good;
      dst[n - 1] = kAsciiLower[b];
    }
  } else if (i < n) {
    // Shorter than a vector: through a buffer padded with a safe non-NUL byte.
    char buf[33];
    __builtin_memset(buf, 'a', sizeof buf);
    __builtin_memcpy(buf, s + i, n - i);
    Bytes16 out = step(load16(buf), load16(buf + 1));
    __builtin_memcpy(dst + i, &out, n - i);
  }
  return rejected() ? good : kAllGood;
}

// The quoted form of an argument that needs quotes (shlex_quote_append's slow half).
void quote_append(std::string_view arg, std::string& out) {
  out.push_back('\'');
  // Whole runs between single quotes at once (memchr + memcpy), not byte by byte.
  size_t start = 0;
  for (;;) {
    size_t q = arg.find('\'', start);
    if (q == std::string_view::npos) {
      out.append(arg.data() + start, arg.size() - start);
      break;
    }
    out.append(arg.data() + start, q - start);
    out += "'\"'\"'";
    start = q + 1;
  }
  out.push_back('\'');
}

}  // namespace

void join_fold_exec_cmdline(std::string_view filename, std::string_view argv, std::string& out, std::string& scratch) {
  auto general = [&] {
    join_exec_cmdline(filename, argv, scratch);
    casefold(scratch, out);
  };
  // The arguments joined (`rest`), as for_each_arg splits them: one trailing NUL ends the
  // last argument; with a filename, argv[0] is replaced by it. Empty arguments (quoted as
  // '') are left to the general path.
  std::string_view area = argv;
  if (area.empty()) return general();
  if (area.back() == '\0') area.remove_suffix(1);
  if (area.empty()) return general();
  std::string_view rest = area;
  bool have_rest = true;
  if (!filename.empty()) {
    size_t nul = area.find('\0');
    have_rest = nul != std::string_view::npos;
    rest = have_rest ? area.substr(nul + 1) : std::string_view();
  }
  if (have_rest && (rest.empty() || rest.front() == '\0' || rest.back() == '\0')) return general();

  size_t head = filename.empty() ? 0 : filename.size() + (have_rest ? 1 : 0);
  out.resize(head + rest.size());
  if (!filename.empty()) {
    if (fold_plain<false>(filename, out.data()) != kAllGood) return general();
    if (have_rest) out[filename.size()] = ' ';
  }
  if (!have_rest) return;
  size_t good = fold_plain<true>(rest, out.data() + head);
  if (good == kAllGood) return;
  // Keep what is done: the arguments that end before `good` are joined and folded. The
  // others are joined and casefolded as usual, after them (both steps work argument by
  // argument, and casefolding never joins bytes across the ASCII space in between).
  size_t nul = rest.substr(0, good).rfind('\0');
  size_t from = nul == std::string_view::npos ? 0 : nul + 1;
  out.resize(head + from);
  join_proc_cmdline(rest.substr(from), scratch);  // not empty, and its last byte is no NUL
  casefold_append(scratch, out);
}

void join_fold_proc_cmdline(std::string_view argv, std::string& out, std::string& scratch) {
  join_fold_exec_cmdline({}, argv, out, scratch);
}

void shlex_quote_append(std::string_view arg, std::string& out) {
  if (arg.empty()) {
    out += "''";
    return;
  }
  bool safe = std::all_of(arg.begin(), arg.end(), [](char c) { return kShlexSafe[static_cast<unsigned char>(c)]; });
  if (safe) {
    out += arg;
    return;
  }
  quote_append(arg, out);
}

std::string shlex_join(const std::vector<std::string>& args) {
  std::string out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (i > 0) out.push_back(' ');
    shlex_quote_append(args[i], out);
  }
  return out;
}

void join_exec_cmdline(std::string_view filename, std::string_view argv, std::string& out) {
  out.clear();
  bool first = true;
  if (!filename.empty()) {
    shlex_quote_append(filename, out);
    first = false;
  }
  bool skip = !filename.empty();  // argv[0] is replaced by the filename
  for_each_arg(argv, [&](std::string_view arg) {
    if (skip) {
      skip = false;
      return;
    }
    if (!first) out.push_back(' ');
    first = false;
    shlex_quote_append(arg, out);
  });
}

void join_proc_cmdline(std::string_view argv, std::string& out) { join_exec_cmdline({}, argv, out); }

bool is_ascii(std::string_view text) {
  // Eight bytes at a time: this runs on every event.
  size_t i = 0;
  uint64_t acc = 0;
  for (; i + 8 <= text.size(); i += 8) {
    uint64_t w;
    __builtin_memcpy(&w, text.data() + i, 8);
    acc |= w;
  }
  for (; i < text.size(); ++i) acc |= static_cast<unsigned char>(text[i]);
  return (acc & 0x8080808080808080ull) == 0;
}

void casefold_append(std::string_view in, std::string& out) {
  if (is_ascii(in)) {
    size_t at = out.size();
    out.resize(at + in.size());
    lower_ascii(in.data(), in.size(), out.data() + at);
    return;
  }
  out.reserve(out.size() + in.size() + in.size() / 4);
  size_t i = 0;
  while (i < in.size()) {
    auto b = static_cast<unsigned char>(in[i]);
    if (b < 0x80) {
      out.push_back(kAsciiLower[b]);
      ++i;
      continue;
    }
    char32_t cp = 0;
    size_t len = decode_utf8(in, i, cp);
    if (len == 0) {
      out.push_back(static_cast<char>(b));  // invalid: kept as it is
      ++i;
      continue;
    }
    if (const auto* fold = find_fold(cp)) {
      for (uint8_t k = 0; k < fold->count; ++k) encode_utf8(fold->to[k], out);
    } else {
      out.append(in.substr(i, len));
    }
    i += len;
  }
}

void casefold(std::string_view in, std::string& out) {
  out.clear();
  casefold_append(in, out);
}

std::string casefold(std::string_view in) {
  std::string out;
  casefold(in, out);
  return out;
}

bool word_char_at(std::string_view text, size_t pos) {
  if (pos >= text.size()) return false;
  auto b = static_cast<unsigned char>(text[pos]);
  if (b < 0x80) return kAsciiWord[b];
  char32_t cp = 0;
  return decode_utf8(text, pos, cp) != 0 && is_word_code_point(cp);
}

bool word_char_before(std::string_view text, size_t pos) {
  if (pos == 0 || pos > text.size()) return false;
  auto b = static_cast<unsigned char>(text[pos - 1]);
  if (b < 0x80) return kAsciiWord[b];
  if (!is_cont(b)) return false;  // a lead byte with nothing after it: invalid
  // Walk back over at most three continuation bytes to the lead byte; the sequence it
  // starts must end exactly at pos.
  size_t start = pos - 1;
  while (start > 0 && pos - start < 4 && is_cont(static_cast<unsigned char>(text[start]))) --start;
  char32_t cp = 0;
  size_t len = decode_utf8(text, start, cp);
  return len != 0 && start + len == pos && is_word_code_point(cp);
}

}  // namespace cryptnono::enforcer
