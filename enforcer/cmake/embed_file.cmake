# Writes a C++ source defining `std::string_view <FUNCTION>()` that returns the bytes of
# INPUT, so a file (config/default.json) is compiled into a binary. Run as a build step:
#   cmake -DINPUT=... -DOUTPUT=... -DFUNCTION=... -DHEADER=... -P embed_file.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# Wrap the long line every 16 bytes so the generated file stays readable (CMake regexes
# have no {n} repetition, hence the repeated group).
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 sixteen)
string(REGEX REPLACE "(${sixteen})" "\\1\n    " bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
"// Generated from ${INPUT} by enforcer/cmake/embed_file.cmake. Do not edit.
#include \"${HEADER}\"

namespace cryptnono::enforcer {

namespace {
// unsigned char: the bytes may be >= 0x80. One extra 0 keeps the array non-empty.
constexpr unsigned char kBytes[] = {
    ${bytes}0x00};
}  // namespace

std::string_view ${FUNCTION}() { return {reinterpret_cast<const char*>(kBytes), ${size}}; }

}  // namespace cryptnono::enforcer
")
# Only touch OUTPUT when it changes, so an unchanged input does not rebuild anything.
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
