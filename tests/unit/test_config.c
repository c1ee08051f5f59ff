/* Settings: defaults, then the file, then the environment, then flags; bounds enforced. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* A configuration file with `text`, its path in `path` (removed by the caller). */
static void write_file(char *path, const char *text) {
        int fd = mkstemp(path);
        FILE *f = fdopen(fd, "w");
        fputs(text, f);
        fclose(f);
}

/* What config_print says of the setting `name`: its line, without the end. */
static void printed(const struct config *c, const char *name, char *out, size_t size) {
        char *text = NULL, *line;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        size_t n = strlen(name);

        config_print(f, c);
        fclose(f);
        out[0] = '\0';
        for (line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
                if (!strncmp(line, name, n) && line[n] == ' ')
                        snprintf(out, size, "%s", line);
        free(text);
}

TEST(the_file_is_below_the_environment_and_flags_and_says_where_each_came_from) {
        char path[] = "/tmp/homing-test-config-XXXXXX", line[512], *argv[5];
        struct config c;

        write_file(path, "# a comment\n"
                         "\n"
                         "listen = 127.0.0.1:7\n"
                         "HOMING_BATCH_MAX=9\n"
                         "  move-margin-m =  100  \n"
                         "log-level = \"warn\"\n"
                         "consumer-group = g-file\n");
        argv[0] = "serve";
        argv[1] = "--config";
        argv[2] = path;
        argv[3] = "--batch-max=11";
        argv[4] = NULL;
        setenv("HOMING_MOVE_MARGIN_M", "200", 1);
        CHECK(config_load(&c, 4, argv, "t") == 0);
        CHECK_STR(c.listen, "127.0.0.1:7");
        CHECK_STR(c.log_level, "warn");
        CHECK_STR(c.consumer_group, "g-file");
        CHECK(c.batch_max == 11);
        CHECK_NEAR(c.move_margin_m, 200, 0);
        printed(&c, "listen", line, sizeof(line));
        CHECK(strstr(line, "listen = 127.0.0.1:7") && strstr(line, ":3)"));
        printed(&c, "batch-max", line, sizeof(line));
        CHECK_STR(line, "batch-max = 11  (--batch-max)");
        printed(&c, "move-margin-m", line, sizeof(line));
        CHECK_STR(line, "move-margin-m = 200  (HOMING_MOVE_MARGIN_M)");
        printed(&c, "topic-audit", line, sizeof(line));
        CHECK_STR(line, "topic-audit = homing.audit.v1  (default)");
        config_fini(&c);
        unsetenv("HOMING_MOVE_MARGIN_M");

        /* The same file from HOMING_CONFIG. */
        setenv("HOMING_CONFIG", path, 1);
        CHECK(config_load(&c, 1, argv, "t") == 0);
        CHECK(c.batch_max == 9);
        config_fini(&c);
        unsetenv("HOMING_CONFIG");
        unlink(path);
}

TEST(a_bad_line_is_refused_with_its_file_and_number) {
        static const char *bad[] = {
                "listen = 127.0.0.1:7\nno equals sign here\n",
                "listen = 127.0.0.1:7\nno-such-setting = 1\n",
                "listen = 127.0.0.1:7\nbatch-max = 0\n",
                "listen = 127.0.0.1:7\nconfig = /etc/elsewhere.conf\n",
        };
        char *argv[] = { "serve", NULL, NULL };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char path[] = "/tmp/homing-test-config-XXXXXX", expect[64], said[512] = "";
                struct config c;
                char arg[64];
                FILE *err = tmpfile();
                int saved = dup(2);

                write_file(path, bad[i]);
                snprintf(arg, sizeof(arg), "--config=%s", path);
                argv[1] = arg;
                fflush(stderr);
                dup2(fileno(err), 2);
                CHECK(config_load(&c, 2, argv, "t") == -EINVAL);
                fflush(stderr);
                dup2(saved, 2);
                close(saved);
                rewind(err);
                CHECK(fgets(said, sizeof(said), err) != NULL);
                fclose(err);
                snprintf(expect, sizeof(expect), "%s:2: ", path);
                if (!strstr(said, expect))
                        printf("#   case %zu said: %s", i, said);
                CHECK(strstr(said, expect) != NULL);
                unlink(path);
        }
}

TEST(a_named_file_must_exist_and_the_default_one_may_be_missing) {
        struct config c;
        char *named[] = { "serve", "--config", "/nonexistent/homing.conf", NULL };
        char *none[] = { "serve", "--config=", NULL };

        CHECK(config_load(&c, 3, named, "t") == -EINVAL);
        CHECK(config_load(&c, 2, none, "t") == 0);
        CHECK_STR(c.config, "");
        config_fini(&c);
}

TEST(secrets_are_masked_when_printed) {
        struct config c;
        char line[512];
        char *argv[] = { "serve",
                         "--pg-dsn",
                         "host=db port=5432 password=hunter2 user=homing sslmode=verify-full",
                         "--device-token-keys",
                         "k1:c2VjcmV0",
                         NULL };

        CHECK(config_load(&c, 5, argv, "t") == 0);
        printed(&c, "pg-dsn", line, sizeof(line));
        CHECK_STR(line, "pg-dsn = host=db port=5432 password=******** user=homing "
                        "sslmode=verify-full  (--pg-dsn)");
        printed(&c, "device-token-keys", line, sizeof(line));
        CHECK_STR(line, "device-token-keys = ********  (--device-token-keys)");
        config_fini(&c);

        argv[2] = "postgresql://homing:hunter2@db:5432/homing";
        CHECK(config_load(&c, 3, argv, "t") == 0);
        printed(&c, "pg-dsn", line, sizeof(line));
        CHECK_STR(line, "pg-dsn = postgresql://homing:********@db:5432/homing  (--pg-dsn)");
        config_fini(&c);
}

TEST(kafka_properties_accumulate_from_every_source_in_order_and_hide_passwords) {
        char path[] = "/tmp/homing-test-config-XXXXXX", line[512];
        struct config c;
        char *argv[] = { "serve",
                         "--config",
                         path,
                         "--kafka-property",
                         "sasl.password=flag",
                         "--kafka-property=client.id=x",
                         NULL };

        write_file(path, "kafka-property = security.protocol=SASL_SSL\n"
                         "kafka-property = sasl.password=file\n");
        setenv("HOMING_KAFKA_PROPERTY", "sasl.username=u\nsasl.mechanisms=SCRAM-SHA-256", 1);
        CHECK(config_load(&c, 6, argv, "t") == 0);
        CHECK_STR(c.kafka_property, "security.protocol=SASL_SSL\nsasl.password=file\n"
                                    "sasl.username=u\nsasl.mechanisms=SCRAM-SHA-256\n"
                                    "sasl.password=flag\nclient.id=x");
        printed(&c, "kafka-property", line, sizeof(line));
        CHECK(strstr(line, "sasl.password=********") && !strstr(line, "flag") &&
              !strstr(line, "=file"));
        CHECK(strstr(line, "security.protocol=SASL_SSL | ") != NULL);
        CHECK(strstr(line, ":1, ") && strstr(line, "HOMING_KAFKA_PROPERTY, --kafka-property, "
                                                   "--kafka-property)"));
        config_fini(&c);
        unsetenv("HOMING_KAFKA_PROPERTY");
        unlink(path);
}

TEST(a_yes_or_no_setting_takes_true_or_false) {
        struct config c;
        char *off[] = { "migrate", "--create-topics=false", NULL };
        char *bad[] = { "migrate", "--create-topics", "maybe", NULL };
        char *none[] = { "migrate", NULL };

        CHECK(config_load(&c, 1, none, "t") == 0);
        CHECK(c.create_topics);
        config_fini(&c);
        CHECK(config_load(&c, 2, off, "t") == 0);
        CHECK(!c.create_topics);
        config_fini(&c);
        setenv("HOMING_CREATE_TOPICS", "no", 1);
        CHECK(config_load(&c, 1, none, "t") == 0);
        CHECK(!c.create_topics);
        config_fini(&c);
        unsetenv("HOMING_CREATE_TOPICS");
        CHECK(config_load(&c, 3, bad, "t") == -EINVAL);
}

TAP_MAIN(TAP_TEST(defaults_apply_without_environment_or_flags),
         TAP_TEST(the_environment_overrides_defaults_and_flags_override_both),
         TAP_TEST(out_of_bounds_and_unknown_settings_are_refused),
         TAP_TEST(the_file_is_below_the_environment_and_flags_and_says_where_each_came_from),
         TAP_TEST(a_bad_line_is_refused_with_its_file_and_number),
         TAP_TEST(a_named_file_must_exist_and_the_default_one_may_be_missing),
         TAP_TEST(secrets_are_masked_when_printed),
         TAP_TEST(kafka_properties_accumulate_from_every_source_in_order_and_hide_passwords),
         TAP_TEST(a_yes_or_no_setting_takes_true_or_false))
