add_executable(common_test common_test.cpp common_curve_test.cpp common_direct_test.cpp)
target_link_libraries(common_test PRIVATE cryptnono_common GTest::gtest_main)
gtest_discover_tests(common_test PROPERTIES LABELS unit)

# Its own binary: the live cases switch the whole test process to SCHED_FIFO (and back).
add_executable(common_sched_test common_sched_test.cpp)
target_link_libraries(common_sched_test PRIVATE cryptnono_common GTest::gtest_main)
gtest_discover_tests(common_sched_test PROPERTIES LABELS unit)
