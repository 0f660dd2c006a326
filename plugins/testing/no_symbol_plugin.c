/* Test fixture: a shared object that does not export koukan_plugin_register. */
int not_a_koukan_plugin(void) { return 42; }
