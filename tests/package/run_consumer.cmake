# Builds and runs tests/package/consumer through one consumption route.
# Called by ctest (see CMakeLists.txt here) as
#
#   cmake -DROUTE=<install|build-tree|subdirectory|fetchcontent>
#         -DSOURCE_DIR=<elastic source> -DBINARY_DIR=<outer build tree>
#         -DWORK_DIR=<scratch dir, wiped first> -DGENERATOR=<generator>
#         [-DCONFIG=<build type>] [-DCXX_COMPILER=...] [-DCUDA_COMPILER=...]
#         [-DCUDA_HOST_COMPILER=...] [-DCUDA_ARCHITECTURES=<a,b,...>]
#         [-DMAKE_PROGRAM=...]
#         [-DCONSUMER_CUDA=ON] [-DELASTIC_CUDA=OFF] [-DHIDE_CUDA_TOOLKIT=ON]
#         [-DJOBS=2]
#         -P run_consumer.cmake
#
#   install       cmake --install the outer build tree into WORK_DIR/prefix,
#                 then find_package(elastic CONFIG) from there
#   build-tree    find_package(elastic CONFIG) from the outer build tree
#   subdirectory  add_subdirectory(SOURCE_DIR)
#   fetchcontent  FetchContent_Declare(elastic SOURCE_DIR ...)
#
# CONSUMER_CUDA=ON also builds and runs the consumer's .cu program (on a GPU it
# checks the CUDA executor against the host one; without one it exits 0).
# ELASTIC_CUDA is passed to the library as ELASTIC_ENABLE_CUDA on the source
# routes. HIDE_CUDA_TOOLKIT=ON makes
# find_package(CUDAToolkit) fail in the consumer, as on a machine without
# CUDA, and checks that the package then provides no elastic::cuda.
cmake_minimum_required(VERSION 3.25)

foreach(required ROUTE SOURCE_DIR BINARY_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${required} OR "${${required}}" STREQUAL "")
    message(FATAL_ERROR "run_consumer.cmake: -D${required}=... is required")
  endif()
endforeach()
if(NOT DEFINED CONFIG OR CONFIG STREQUAL "")
  set(CONFIG Release)
endif()
if(NOT DEFINED JOBS OR JOBS STREQUAL "")
  set(JOBS 2)
endif()
foreach(flag CONSUMER_CUDA HIDE_CUDA_TOOLKIT)
  if(NOT DEFINED ${flag})
    set(${flag} OFF)
  endif()
endforeach()

# Runs a command, echoing it; stops the script when it fails.
function(run_step what)
  string(REPLACE ";" " " shown "${ARGN}")
  message(STATUS "[${ROUTE}] ${what}: ${shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "[${ROUTE}] ${what} failed (${result})")
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(consumer_build "${WORK_DIR}/build")

set(configure_args
  -S "${CMAKE_CURRENT_LIST_DIR}/consumer"
  -B "${consumer_build}"
  -G "${GENERATOR}"
  -DCMAKE_BUILD_TYPE=${CONFIG}
  -DELASTIC_CONSUMER_CUDA=${CONSUMER_CUDA})
# Tools of the outer build, passed on when given.
foreach(pair MAKE_PROGRAM:CMAKE_MAKE_PROGRAM CXX_COMPILER:CMAKE_CXX_COMPILER
             CUDA_COMPILER:CMAKE_CUDA_COMPILER CUDA_HOST_COMPILER:CMAKE_CUDA_HOST_COMPILER)
  string(REPLACE ":" ";" pair "${pair}")
  list(GET pair 0 given)
  list(GET pair 1 variable)
  if(DEFINED ${given} AND NOT "${${given}}" STREQUAL "")
    list(APPEND configure_args "-D${variable}=${${given}}")
  endif()
endforeach()
if(DEFINED CUDA_ARCHITECTURES AND NOT CUDA_ARCHITECTURES STREQUAL "")
  # Passed with commas (ctest splits arguments at semicolons).
  string(REPLACE "," ";" cuda_architectures "${CUDA_ARCHITECTURES}")
  list(APPEND configure_args "-DCMAKE_CUDA_ARCHITECTURES=${cuda_architectures}")
endif()
if(HIDE_CUDA_TOOLKIT)
  list(APPEND configure_args
    -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON
    -DELASTIC_CONSUMER_EXPECT_NO_CUDA_TARGET=ON)
endif()

if(ROUTE STREQUAL "install")
  set(prefix "${WORK_DIR}/prefix")
  run_step("install" "${CMAKE_COMMAND}" --install "${BINARY_DIR}" --config "${CONFIG}"
           --prefix "${prefix}" --component elastic_development)
  set(expected_files include/elastic/elastic.hpp include/elastic/version.hpp)
  if(CONSUMER_CUDA)
    list(APPEND expected_files include/elastic/elastic.cuh)
  endif()
  foreach(expected IN LISTS expected_files)
    if(NOT EXISTS "${prefix}/${expected}")
      message(FATAL_ERROR "[${ROUTE}] the install is missing ${expected}")
    endif()
  endforeach()
  file(GLOB_RECURSE package_configs "${prefix}/*/elasticConfig.cmake")
  if(NOT package_configs)
    message(FATAL_ERROR "[${ROUTE}] the install has no elasticConfig.cmake")
  endif()
  list(APPEND configure_args -DELASTIC_CONSUMER_ROUTE=package "-DCMAKE_PREFIX_PATH=${prefix}")
elseif(ROUTE STREQUAL "build-tree")
  list(APPEND configure_args -DELASTIC_CONSUMER_ROUTE=package "-DCMAKE_PREFIX_PATH=${BINARY_DIR}")
elseif(ROUTE STREQUAL "subdirectory" OR ROUTE STREQUAL "fetchcontent")
  list(APPEND configure_args -DELASTIC_CONSUMER_ROUTE=${ROUTE} "-DELASTIC_SOURCE_DIR=${SOURCE_DIR}")
  if(DEFINED ELASTIC_CUDA AND NOT ELASTIC_CUDA STREQUAL "")
    list(APPEND configure_args -DELASTIC_ENABLE_CUDA=${ELASTIC_CUDA})
  endif()
else()
  message(FATAL_ERROR "run_consumer.cmake: unknown ROUTE '${ROUTE}'")
endif()

run_step("configure" "${CMAKE_COMMAND}" ${configure_args})
run_step("build" "${CMAKE_COMMAND}" --build "${consumer_build}" --config "${CONFIG}" --parallel ${JOBS})

set(programs elastic_consumer_host)
foreach(optional elastic_consumer_io elastic_consumer_search)
  if(EXISTS "${consumer_build}/${optional}" OR EXISTS "${consumer_build}/${CONFIG}/${optional}")
    list(APPEND programs ${optional})
  endif()
endforeach()
if(CONSUMER_CUDA)
  list(APPEND programs elastic_consumer_cuda)
endif()
foreach(program IN LISTS programs)
  set(found "")
  foreach(candidate
      "${consumer_build}/${program}"
      "${consumer_build}/${CONFIG}/${program}"
      "${consumer_build}/${program}.exe"
      "${consumer_build}/${CONFIG}/${program}.exe")
    if(EXISTS "${candidate}")
      set(found "${candidate}")
      break()
    endif()
  endforeach()
  if(found STREQUAL "")
    message(FATAL_ERROR "[${ROUTE}] ${program} was not built")
  endif()
  run_step("run" "${found}")
endforeach()
message(STATUS "[${ROUTE}] ok")
