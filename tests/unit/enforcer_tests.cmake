# Enforcer tests: matching rules, config, decisions (fake killer), the real pidfd killer on
# the test's own children, the event loop over real sockets, and the binary, for the three
# detectors (execwhacker, monero, flowkiller). No root needed.
add_executable(enforcer_test
  enforcer_address_test.cpp
  enforcer_binary_test.cpp
  enforcer_component_test.cpp
  enforcer_config_test.cpp
  enforcer_decider_test.cpp
  enforcer_detectors_component_test.cpp
  enforcer_detectors_test.cpp
  enforcer_fanout_test.cpp
  enforcer_killer_test.cpp
  enforcer_matcher_test.cpp
  enforcer_text_test.cpp
  enforcer_wake_plan_test.cpp
)
target_link_libraries(enforcer_test PRIVATE enforcer_lib GTest::gtest_main)
target_compile_definitions(enforcer_test PRIVATE CRYPTNONO_ENFORCER_BINARY="$<TARGET_FILE:cryptnono-enforcer>")
add_dependencies(enforcer_test cryptnono-enforcer)
gtest_discover_tests(enforcer_test PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
