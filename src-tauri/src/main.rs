// The cpis-field binary: starts the CP-IS Field window.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    cpis_field_app::run();
}
