# Exporter and `cryptnono tail`: json_view on hostile bytes, cgroup parsing (tests/fixtures/cgroups),
# container enrichment (fake CRI and Docker servers), metrics, and
# end to end with real ipc sockets, real HTTP and the real binaries as subprocesses.
add_executable(exporter_test
  exporter_container_test.cpp
  exporter_e2e_test.cpp
  exporter_enrich_test.cpp
  exporter_json_view_test.cpp
  exporter_metrics_test.cpp
  exporter_tail_test.cpp
)
# cri_proto: the enrichment tests run a fake CRI server from the same generated code.
target_link_libraries(exporter_test PRIVATE exporter_lib cri_proto GTest::gtest_main)
target_compile_definitions(exporter_test PRIVATE CRYPTNONO_BIN_DIR="${CMAKE_BINARY_DIR}/bin"
                           CRYPTNONO_FIXTURES_DIR="${PROJECT_SOURCE_DIR}/tests/fixtures")
# The subprocess tests run the binaries: build them first.
add_dependencies(exporter_test cryptnono cryptnono-exporter)
gtest_discover_tests(exporter_test PROPERTIES LABELS unit TIMEOUT 120)
