//! Sets pyo3's version cfgs (`Py_3_12`, ...) for the interpreter the module
//! is built for: the 3.11 trace-hook backend uses a symbol later versions
//! do not export, so it is compiled only into 3.11 builds.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
