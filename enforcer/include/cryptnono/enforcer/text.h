// Text rules that make matching compatible with cryptnono (Python): how a command line is
// joined (shlex.join), casefolded (str.casefold) and what counts as a word character
// (the regex class \w on str). All functions work on raw bytes: command lines come from
// the kernel and may hold anything, including invalid UTF-8, which is kept as it is.
// Stateless and thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cryptnono::enforcer {

// Appends Python's shlex.quote(arg): '' for an empty arg; the arg itself when every byte
// is in [A-Za-z0-9_@%+=:,./-] (ASCII only, as Python uses re.ASCII there); otherwise the
// arg in single quotes, each ' written as '"'"'. Bytes >= 0x80 are never "safe".
void shlex_quote_append(std::string_view arg, std::string& out);

// shlex.join(args): the quoted args separated by single spaces.
std::string shlex_join(const std::vector<std::string>& args);

// Calls fn(std::string_view arg) for each argument of a NUL-separated argument area. A
// trailing NUL ends the last argument (no empty argument after it); "" has no arguments.
template <class Fn>
void for_each_arg(std::string_view area, Fn&& fn) {
  if (area.empty()) return;
  if (area.back() == '\0') area.remove_suffix(1);
  size_t start = 0;
  for (;;) {
    size_t nul = area.find('\0', start);
    if (nul == std::string_view::npos) {
      fn(area.substr(start));
      return;
    }
    fn(area.substr(start, nul - start));
    start = nul + 1;
  }
}

// The command line of an exec event, as cryptnono builds it: shlex.join of the exec'd
// filename followed by argv[1:] (so `sh -c x` reads "/usr/bin/sh -c x"). With an empty
// filename, argv[0] is kept instead. `out` is overwritten (its capacity reused).
void join_exec_cmdline(std::string_view filename, std::string_view argv, std::string& out);

// The command line of a /proc sweep: shlex.join of argv as /proc/<pid>/cmdline shows it.
void join_proc_cmdline(std::string_view argv, std::string& out);

// casefold(join_exec_cmdline(...)) / casefold(join_proc_cmdline(...)) in one step, into
// `out`. While every byte is ASCII and no argument needs quoting (most command lines,
// throughout) this is one vectorised pass over the bytes; from the first argument that
// does, the remaining arguments are joined into `scratch` (overwritten) and casefolded
// from there. Both strings keep their capacity across calls.
void join_fold_exec_cmdline(std::string_view filename, std::string_view argv, std::string& out, std::string& scratch);
void join_fold_proc_cmdline(std::string_view argv, std::string& out, std::string& scratch);

// Python's str.casefold() on the UTF-8 decoding of `in`, re-encoded; bytes that are not
// valid UTF-8 are copied unchanged. ASCII-only input takes a fast path. `out` is overwritten.
void casefold(std::string_view in, std::string& out);
std::string casefold(std::string_view in);
// casefold() appended to `out`.
void casefold_append(std::string_view in, std::string& out);

// True when the code point that ends just before byte `pos` (word_char_before) or starts
// at byte `pos` (word_char_at) is a word character as Python's \w on str sees it: ASCII
// [A-Za-z0-9_], or a non-ASCII letter or digit (str.isalnum()). A byte that is not part
// of valid UTF-8 is not a word character; neither is the edge of the text.
bool word_char_before(std::string_view text, size_t pos);
bool word_char_at(std::string_view text, size_t pos);

// True when every byte is ASCII.
bool is_ascii(std::string_view text);

}  // namespace cryptnono::enforcer
