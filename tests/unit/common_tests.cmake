add_executable(common_test common_test.cpp common_curve_test.cpp)
target_link_libraries(common_test PRIVATE cryptnono_common GTest::gtest_main)
gtest_discover_tests(common_test PROPERTIES LABELS unit)
