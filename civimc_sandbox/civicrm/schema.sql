-- CiviCRM fixture schema: the tables civimc-audit reads, as a fresh CiviCRM 5.7x install creates
-- them (column names, types, nullability, keys and TIMESTAMP/DATETIME choices from core's
-- schema/*.entityType.php). Used for the demo and
-- tests only; a real site already has these tables.

CREATE TABLE civicrm_location_type (
  id int unsigned NOT NULL AUTO_INCREMENT,
  name varchar(64) NOT NULL,
  display_name varchar(64) NOT NULL,
  vcard_name varchar(64) DEFAULT NULL,
  description varchar(255) DEFAULT NULL,
  is_reserved tinyint(1) NOT NULL DEFAULT 0,
  is_active tinyint(1) NOT NULL DEFAULT 1,
  is_default tinyint(1) NOT NULL DEFAULT 0,
  PRIMARY KEY (id),
  UNIQUE KEY UI_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE civicrm_contact (
  id int unsigned NOT NULL AUTO_INCREMENT,
  contact_type varchar(64) DEFAULT NULL,
  contact_sub_type varchar(255) DEFAULT NULL,
  do_not_email tinyint(1) NOT NULL DEFAULT 0,
  do_not_phone tinyint(1) NOT NULL DEFAULT 0,
  do_not_mail tinyint(1) NOT NULL DEFAULT 0,
  do_not_sms tinyint(1) NOT NULL DEFAULT 0,
  do_not_trade tinyint(1) NOT NULL DEFAULT 0,
  is_opt_out tinyint(1) NOT NULL DEFAULT 0,
  legal_identifier varchar(32) DEFAULT NULL,
  external_identifier varchar(64) DEFAULT NULL,
  sort_name varchar(128) DEFAULT NULL,
  display_name varchar(128) DEFAULT NULL,
  nick_name varchar(128) DEFAULT NULL,
  legal_name varchar(128) DEFAULT NULL,
  image_URL text DEFAULT NULL,
  preferred_communication_method varchar(255) DEFAULT NULL,
  preferred_language varchar(5) DEFAULT NULL,
  hash varchar(32) DEFAULT NULL,
  api_key varchar(32) DEFAULT NULL,
  source varchar(255) DEFAULT NULL,
  first_name varchar(64) DEFAULT NULL,
  middle_name varchar(64) DEFAULT NULL,
  last_name varchar(64) DEFAULT NULL,
  prefix_id int unsigned DEFAULT NULL,
  suffix_id int unsigned DEFAULT NULL,
  formal_title varchar(64) DEFAULT NULL,
  communication_style_id int unsigned DEFAULT NULL,
  email_greeting_id int unsigned DEFAULT NULL,
  email_greeting_custom varchar(128) DEFAULT NULL,
  email_greeting_display varchar(255) DEFAULT NULL,
  postal_greeting_id int unsigned DEFAULT NULL,
  postal_greeting_custom varchar(128) DEFAULT NULL,
  postal_greeting_display varchar(255) DEFAULT NULL,
  addressee_id int unsigned DEFAULT NULL,
  addressee_custom varchar(128) DEFAULT NULL,
  addressee_display varchar(255) DEFAULT NULL,
  job_title varchar(255) DEFAULT NULL,
  gender_id int unsigned DEFAULT NULL,
  birth_date date DEFAULT NULL,
  is_deceased tinyint(1) NOT NULL DEFAULT 0,
  deceased_date date DEFAULT NULL,
  household_name varchar(128) DEFAULT NULL,
  primary_contact_id int unsigned DEFAULT NULL,
  organization_name varchar(128) DEFAULT NULL,
  sic_code varchar(8) DEFAULT NULL,
  user_unique_id varchar(255) DEFAULT NULL,
  employer_id int unsigned DEFAULT NULL,
  is_deleted tinyint(1) NOT NULL DEFAULT 0,
  created_date timestamp NULL DEFAULT NULL,
  modified_date timestamp NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  preferred_mail_format varchar(8) DEFAULT 'Both',
  PRIMARY KEY (id),
  UNIQUE KEY UI_external_identifier (external_identifier),
  KEY index_contact_type (contact_type),
  KEY index_sort_name (sort_name),
  KEY index_first_name (first_name),
  KEY index_last_name (last_name),
  KEY index_hash (hash),
  KEY index_api_key (api_key),
  KEY index_is_deceased (is_deceased),
  KEY index_is_deleted_sort_name (is_deleted, sort_name, id),
  KEY index_created_date (created_date),
  KEY index_modified_date (modified_date),
  CONSTRAINT FK_civicrm_contact_primary_contact_id FOREIGN KEY (primary_contact_id)
    REFERENCES civicrm_contact (id) ON DELETE SET NULL,
  CONSTRAINT FK_civicrm_contact_employer_id FOREIGN KEY (employer_id)
    REFERENCES civicrm_contact (id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE civicrm_email (
  id int unsigned NOT NULL AUTO_INCREMENT,
  contact_id int unsigned DEFAULT NULL,
  location_type_id int unsigned DEFAULT NULL,
  email varchar(254) DEFAULT NULL,
  is_primary tinyint(1) NOT NULL DEFAULT 0,
  is_billing tinyint(1) NOT NULL DEFAULT 0,
  on_hold int unsigned NOT NULL DEFAULT 0,
  is_bulkmail tinyint(1) NOT NULL DEFAULT 0,
  hold_date datetime DEFAULT NULL,
  reset_date datetime DEFAULT NULL,
  signature_text text DEFAULT NULL,
  signature_html text DEFAULT NULL,
  PRIMARY KEY (id),
  KEY index_location_type (location_type_id),
  KEY UI_email (email),
  KEY index_is_primary (is_primary),
  KEY index_is_billing (is_billing),
  KEY FK_civicrm_email_contact_id (contact_id),
  CONSTRAINT FK_civicrm_email_contact_id FOREIGN KEY (contact_id)
    REFERENCES civicrm_contact (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE civicrm_group (
  id int unsigned NOT NULL AUTO_INCREMENT,
  name varchar(64) NOT NULL,
  title varchar(255) NOT NULL,
  description text DEFAULT NULL,
  source varchar(64) DEFAULT NULL,
  saved_search_id int unsigned DEFAULT NULL,
  is_active tinyint(1) NOT NULL DEFAULT 1,
  visibility varchar(24) DEFAULT 'User and User Admin Only',
  where_clause text DEFAULT NULL,
  select_tables text DEFAULT NULL,
  where_tables text DEFAULT NULL,
  group_type varchar(128) DEFAULT NULL,
  cache_date timestamp NULL DEFAULT NULL,
  cache_fill_took double DEFAULT NULL,
  refresh_date timestamp NULL DEFAULT NULL,
  parents text DEFAULT NULL,
  children text DEFAULT NULL,
  is_hidden tinyint(1) NOT NULL DEFAULT 0,
  is_reserved tinyint(1) NOT NULL DEFAULT 0,
  created_id int unsigned DEFAULT NULL,
  modified_id int unsigned DEFAULT NULL,
  frontend_title varchar(255) NOT NULL,
  frontend_description text DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY UI_name (name),
  UNIQUE KEY UI_title (title),
  KEY index_group_type (group_type),
  KEY UI_cache_date (cache_date),
  CONSTRAINT FK_civicrm_group_created_id FOREIGN KEY (created_id)
    REFERENCES civicrm_contact (id) ON DELETE SET NULL,
  CONSTRAINT FK_civicrm_group_modified_id FOREIGN KEY (modified_id)
    REFERENCES civicrm_contact (id) ON DELETE SET NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE civicrm_group_contact (
  id int unsigned NOT NULL AUTO_INCREMENT,
  group_id int unsigned NOT NULL,
  contact_id int unsigned NOT NULL,
  status varchar(8) DEFAULT NULL,
  location_id int unsigned DEFAULT NULL,
  email_id int unsigned DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY UI_contact_group (contact_id, group_id),
  KEY FK_civicrm_group_contact_group_id (group_id),
  KEY FK_civicrm_group_contact_location_id (location_id),
  KEY FK_civicrm_group_contact_email_id (email_id),
  CONSTRAINT FK_civicrm_group_contact_group_id FOREIGN KEY (group_id)
    REFERENCES civicrm_group (id) ON DELETE CASCADE,
  CONSTRAINT FK_civicrm_group_contact_contact_id FOREIGN KEY (contact_id)
    REFERENCES civicrm_contact (id) ON DELETE CASCADE,
  CONSTRAINT FK_civicrm_group_contact_email_id FOREIGN KEY (email_id)
    REFERENCES civicrm_email (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE civicrm_subscription_history (
  id int unsigned NOT NULL AUTO_INCREMENT,
  contact_id int unsigned NOT NULL,
  group_id int unsigned DEFAULT NULL,
  `date` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
  method varchar(8) DEFAULT NULL,
  status varchar(8) DEFAULT NULL,
  tracking varchar(255) DEFAULT NULL,
  PRIMARY KEY (id),
  KEY FK_civicrm_subscription_history_contact_id (contact_id),
  KEY FK_civicrm_subscription_history_group_id (group_id),
  CONSTRAINT FK_civicrm_subscription_history_contact_id FOREIGN KEY (contact_id)
    REFERENCES civicrm_contact (id) ON DELETE CASCADE,
  CONSTRAINT FK_civicrm_subscription_history_group_id FOREIGN KEY (group_id)
    REFERENCES civicrm_group (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

CREATE TABLE civicrm_group_contact_cache (
  id int unsigned NOT NULL AUTO_INCREMENT,
  group_id int unsigned NOT NULL,
  contact_id int unsigned NOT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY UI_contact_group (contact_id, group_id),
  KEY FK_civicrm_group_contact_cache_group_id (group_id),
  CONSTRAINT FK_civicrm_group_contact_cache_group_id FOREIGN KEY (group_id)
    REFERENCES civicrm_group (id) ON DELETE CASCADE,
  CONSTRAINT FK_civicrm_group_contact_cache_contact_id FOREIGN KEY (contact_id)
    REFERENCES civicrm_contact (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci ROW_FORMAT=DYNAMIC;

INSERT INTO civicrm_location_type (id, name, display_name, vcard_name, description, is_reserved, is_active, is_default) VALUES
  (1, 'Home', 'Home', 'HOME', 'Place of residence', 0, 1, 1),
  (2, 'Work', 'Work', 'WORK', 'Work location', 0, 1, 0),
  (3, 'Main', 'Main', NULL, 'Main office location', 0, 1, 0),
  (4, 'Other', 'Other', NULL, 'Other location', 0, 1, 0),
  (5, 'Billing', 'Billing', NULL, 'Billing Address location', 1, 1, 0);
