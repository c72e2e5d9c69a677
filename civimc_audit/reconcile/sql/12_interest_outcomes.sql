-- Step 12 — the interest rows (DESIGN "Interest groups", `outcomes --interests`): each with a
-- reason a person can read without the rules table — which date decided (the per-group winner
-- of step 11) and what happens to which group or interest (I1–I6). Dates as in step 9: the day,
-- with the time as well when both fall on the same day.
CREATE OR REPLACE TEMP VIEW i_worded AS
WITH d AS (
    SELECT r.*,
           coalesce(civicrm_changed::DATE = mailchimp_changed::DATE, false) AS same_day,
           concat('''', coalesce(interest_name, interest_id), '''') AS iname,
           concat('''', coalesce(group_title, concat('group ', group_id)), '''') AS gname
    FROM i_ruled r
)
SELECT d.*,
    -- Only changes name their dates (I1 and I2 sentences have none): strftime is the costly
    -- part of a sentence, and most rows agree.
    CASE WHEN rule IN ('I1', 'I2') THEN NULL
         WHEN same_day THEN strftime(civicrm_changed, '%-d %b %Y %H:%M:%S UTC')
         ELSE strftime(civicrm_changed, '%-d %b %Y') END AS cdate,
    CASE WHEN rule IN ('I1', 'I2') THEN NULL
         WHEN same_day THEN strftime(mailchimp_changed, '%-d %b %Y %H:%M:%S UTC')
         ELSE strftime(mailchimp_changed, '%-d %b %Y') END AS mdate,
    CASE history_status
        WHEN 'Added' THEN 'added them to' WHEN 'Removed' THEN 'removed them from'
        WHEN 'Pending' THEN 'marked them pending in'
        WHEN 'Deleted' THEN 'deleted their membership of'
        ELSE concat('recorded "', history_status, '" in')
    END AS hverb,
    CASE WHEN mailchimp_interest THEN 'shows them in ' ELSE 'shows them not in ' END AS mshows,
    CASE lower(gc_status)
        WHEN 'added' THEN 'has them in' WHEN 'pending' THEN 'has them pending in'
        ELSE 'does not have them in'
    END AS cshows
FROM d;

CREATE OR REPLACE TEMP VIEW i_reasoned AS
SELECT w.*,
    CASE
        WHEN member_id IS NULL
            THEN concat('Not yet in the Mailchimp audience, so Mailchimp has no value for ',
                        iname)
        WHEN NOT in_audience
            THEN concat('The Mailchimp audience has no interest ', interest_id,
                        ' (mapped to the CiviCRM group ', gname, ')')
        WHEN mailchimp_interest IS NULL
            THEN concat('Mailchimp has no value for ', iname, ' for this member (the interest ',
                        'was added or mapped after they joined)')
        WHEN rule = 'I2'
            THEN concat('Mailchimp ', mshows, iname, ' and CiviCRM ', cshows, ' the group ', gname)
        WHEN contact_id IS NULL
            THEN concat('Mailchimp ', mshows, iname, ', and they have no CiviCRM contact yet (one ',
                        'is created), so Mailchimp decides')
        WHEN history_undated
            THEN concat('Mailchimp ', mshows, iname, ', and CiviCRM''s history for them in the ',
                        'group ', gname, ' has no usable date')
        WHEN NOT has_history
            THEN concat('Mailchimp ', mshows, iname, ', and CiviCRM ', cshows, ' the group ',
                        gname, ' with no history, so Mailchimp decides')
        WHEN mailchimp_changed IS NULL
            THEN concat('CiviCRM ', hverb, ' the group ', gname, ' on ', cdate,
                        ', and Mailchimp has no change date, so CiviCRM decides')
        WHEN tie
            THEN concat('CiviCRM ', hverb, ' the group ', gname, ' on ', cdate,
                        ', the same second as Mailchimp''s last change, and a tie goes to ',
                        CASE winner WHEN 'civicrm' THEN 'CiviCRM'
                                    ELSE 'Mailchimp (policy tie_winner)' END)
        WHEN winner = 'civicrm'
            THEN concat('CiviCRM ', hverb, ' the group ', gname, ' on ', cdate,
                        ', after Mailchimp''s last change on ', mdate)
        ELSE concat('Mailchimp ', mshows, iname, ' since ', mdate, ', after CiviCRM ', hverb,
                    ' the group ', gname, ' on ', cdate)
    END AS why,
    CASE
        WHEN reason_code = 'no_history_date'
            THEN concat('cannot change the CiviCRM group ', gname, ' without knowing when CiviCRM ',
                        'last changed them (fix the date of their history in CiviCRM)')
        WHEN rule = 'I1' THEN 'nothing to do until it has one'
        WHEN rule = 'I2' THEN 'nothing to do'
        WHEN rule = 'I3' THEN concat('added to the CiviCRM group ', gname)
        WHEN rule = 'I4' THEN concat('removed from the CiviCRM group ', gname)
        WHEN rule = 'I5' THEN concat(iname, ' set in Mailchimp')
        ELSE concat(iname, ' cleared in Mailchimp')
    END AS action
FROM i_worded w;

INSERT INTO interest_outcomes
SELECT getvariable('reconciliation_id') AS reconciliation_id,
       person_id, contact_id,
       interest_id, interest_name, category_title,
       group_id AS civicrm_group_id, group_title AS civicrm_group_title,
       mailchimp_interest,
       coalesce(gc_status, CASE WHEN history_status = 'Deleted' THEN 'Deleted' END)
           AS civicrm_status,
       civicrm_changed, mailchimp_changed, winner, outcome, rule,
       coalesce(reason_code, '') AS reason_code,
       concat(why, ': ', action, '.') AS reason
FROM i_reasoned;
