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

}  // namespace

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

void casefold(std::string_view in, std::string& out) {
  out.clear();
  if (is_ascii(in)) {
    // Eight bytes at a time (SWAR): for bytes < 0x80, adding 0x3F sets bit 7 from 'A' up
    // and adding 0x25 sets it above 'Z'; no carry crosses a byte.
    out.resize(in.size());
    const char* s = in.data();
    char* o = out.data();
    size_t i = 0;
    for (; i + 8 <= in.size(); i += 8) {
      uint64_t w;
      __builtin_memcpy(&w, s + i, 8);
      uint64_t upper = (w + 0x3F3F3F3F3F3F3F3Full) & ~(w + 0x2525252525252525ull) & 0x8080808080808080ull;
      w |= upper >> 2;
      __builtin_memcpy(o + i, &w, 8);
    }
    for (; i < in.size(); ++i) o[i] = kAsciiLower[static_cast<unsigned char>(s[i])];
    return;
  }
  out.reserve(in.size() + in.size() / 4);
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
