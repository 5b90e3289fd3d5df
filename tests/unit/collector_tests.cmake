# Collector unit tests (no privileges): the /proc sweep on a fixture tree, ring-buffer
# record parsing and conversion, flag validation, and publishing over a real ipc socket.
add_executable(collector_test
  collector_sweeper_test.cpp
  collector_events_test.cpp
  collector_config_test.cpp
  collector_publish_test.cpp
)
target_link_libraries(collector_test PRIVATE collector_lib GTest::gtest_main)
gtest_discover_tests(collector_test PROPERTIES LABELS unit)
# Fixtures use C++20 designated initializers that leave fields at their defaults on
# purpose; GCC 12 warns about that under -Wextra (GCC 13 no longer does).
target_compile_options(collector_test PRIVATE -Wno-missing-field-initializers)
