/* Settings: defaults, then the environment, then flags; bounds enforced. */
#include <errno.h>
#include <stdlib.h>

#include "base/config.h"
#include "tap.h"

TEST(defaults_apply_without_environment_or_flags) {
        struct config c;
        char *argv[] = { "serve", NULL };
        unsetenv("HOMING_LISTEN");
        unsetenv("HOMING_MOVE_MARGIN_M");
        CHECK(config_load(&c, 1, argv, "t") == 0);
        CHECK_STR(c.listen, "127.0.0.1:58080");
        CHECK_STR(c.topic_locations, "homing.locations.v1");
        CHECK_NEAR(c.move_margin_m, 50000, 0);
        config_fini(&c);
}

TEST(the_environment_overrides_defaults_and_flags_override_both) {
        struct config c;
        char *argv[] = { "serve", "--listen", "127.0.0.1:9", "--move-margin-m=12.5", NULL };
        setenv("HOMING_LISTEN", "127.0.0.1:8", 1);
        setenv("HOMING_BATCH_MAX", "7", 1);
        CHECK(config_load(&c, 4, argv, "t") == 0);
        CHECK_STR(c.listen, "127.0.0.1:9");
        CHECK_NEAR(c.move_margin_m, 12.5, 0);
        CHECK(c.batch_max == 7);
        config_fini(&c);
        unsetenv("HOMING_LISTEN");
        unsetenv("HOMING_BATCH_MAX");
}

TEST(out_of_bounds_and_unknown_settings_are_refused) {
        struct config c;
        char *bad_number[] = { "serve", "--batch-max", "0", NULL };
        char *not_number[] = { "serve", "--move-margin-m", "far", NULL };
        char *unknown[] = { "serve", "--no-such-thing", "1", NULL };
        char *missing[] = { "serve", "--listen", NULL };
        CHECK(config_load(&c, 3, bad_number, "t") == -EINVAL);
        CHECK(config_load(&c, 3, not_number, "t") == -EINVAL);
        CHECK(config_load(&c, 3, unknown, "t") == -EINVAL);
        CHECK(config_load(&c, 2, missing, "t") == -EINVAL);
        setenv("HOMING_PRODUCE_TIMEOUT_MS", "nan", 1);
        CHECK(config_load(&c, 1, bad_number, "t") == -EINVAL);
        unsetenv("HOMING_PRODUCE_TIMEOUT_MS");
}

TAP_MAIN(TAP_TEST(defaults_apply_without_environment_or_flags),
         TAP_TEST(the_environment_overrides_defaults_and_flags_override_both),
         TAP_TEST(out_of_bounds_and_unknown_settings_are_refused))
