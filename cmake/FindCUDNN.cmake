# FindCUDNN: NVIDIA cuDNN, which installs no CMake package of its own (neither does the CUDA toolkit).
#
#   find_package(CUDNN [<version>] [REQUIRED])
#
# Searched, in this order: CUDNN_ROOT (a CMake or environment variable: the prefix holding include/ and lib/), the
# CUDA toolkit's directories (CUDAToolkit_* after find_package(CUDAToolkit); cuDNN is often unpacked into the
# toolkit), then the system paths. -DCMAKE_DISABLE_FIND_PACKAGE_CUDNN=ON skips the search altogether.
#
# Result: CUDNN_FOUND, CUDNN_VERSION (major.minor.patch from cudnn_version.h, or cudnn.h before cuDNN 8),
# CUDNN_INCLUDE_DIR and CUDNN_LIBRARY (cache entries, to point at a particular install), and the imported
# target CUDNN::cudnn. Linking it is enough: since cuDNN 8, libcudnn loads its sub-libraries (cnn, ops, engines)
# itself at run time.

set(_cudnn_hints ${CUDNN_ROOT} $ENV{CUDNN_ROOT})
foreach(_dir IN ITEMS ${CUDAToolkit_LIBRARY_ROOT} ${CUDAToolkit_TARGET_DIR} ${CUDAToolkit_ROOT})
  list(APPEND _cudnn_hints ${_dir})
endforeach()

find_path(CUDNN_INCLUDE_DIR cudnn.h
  HINTS ${_cudnn_hints} ${CUDAToolkit_INCLUDE_DIRS}
  PATH_SUFFIXES include
  DOC "Directory holding cudnn.h")
find_library(CUDNN_LIBRARY cudnn
  HINTS ${_cudnn_hints} ${CUDAToolkit_LIBRARY_DIR}
  PATH_SUFFIXES lib64 lib lib/x64
  DOC "The cuDNN library (libcudnn.so)")

# The version: cudnn_version.h since cuDNN 8, cudnn.h before.
unset(CUDNN_VERSION)
if(CUDNN_INCLUDE_DIR)
  set(_cudnn_version_header ${CUDNN_INCLUDE_DIR}/cudnn_version.h)
  if(NOT EXISTS ${_cudnn_version_header})
    set(_cudnn_version_header ${CUDNN_INCLUDE_DIR}/cudnn.h)
  endif()
  file(STRINGS ${_cudnn_version_header} _cudnn_version_lines REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) +[0-9]+")
  foreach(_part IN ITEMS MAJOR MINOR PATCHLEVEL)
    string(REGEX MATCH "#define CUDNN_${_part} +([0-9]+)" _match "${_cudnn_version_lines}")
    set(_cudnn_${_part} ${CMAKE_MATCH_1})
  endforeach()
  if(NOT _cudnn_MAJOR STREQUAL "" AND NOT _cudnn_MINOR STREQUAL "" AND NOT _cudnn_PATCHLEVEL STREQUAL "")
    set(CUDNN_VERSION ${_cudnn_MAJOR}.${_cudnn_MINOR}.${_cudnn_PATCHLEVEL})
  endif()
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUDNN
  REQUIRED_VARS CUDNN_LIBRARY CUDNN_INCLUDE_DIR
  VERSION_VAR CUDNN_VERSION)

if(CUDNN_FOUND AND NOT TARGET CUDNN::cudnn)
  add_library(CUDNN::cudnn UNKNOWN IMPORTED)
  set_target_properties(CUDNN::cudnn PROPERTIES
    IMPORTED_LOCATION ${CUDNN_LIBRARY}
    INTERFACE_INCLUDE_DIRECTORIES ${CUDNN_INCLUDE_DIR})
endif()

mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)
unset(_cudnn_hints)
unset(_cudnn_version_header)
unset(_cudnn_version_lines)
unset(_match)
